"""`rnnserve serve | predict | status | metadata | generate`: the serving commands.

`register_server(subparsers)` and `register_clients(subparsers)` add them to
the `rnnserve` command; the work is in `serving.server` (serve) and
`serving.cli_client` (the client commands). Registering the client commands
imports nothing beyond argparse, so they run in the client-only install.

Typical use::

    rnnserve serve --model_name charlm --model_base_path exports/charlm
    rnnserve status --server 127.0.0.1:8500 --model charlm
    rnnserve metadata --server 127.0.0.1:8500 --model charlm
    rnnserve predict --server 127.0.0.1:8500 --model charlm --input tokens='[[5,6,7]]'
    rnnserve generate --server 127.0.0.1:8500 --model charlm --prompt "The " --max-new-tokens 200
    rnnserve generate --server 127.0.0.1:8500 --model charlm --prompt "The " --server-state --stop "."
"""

from __future__ import annotations

import argparse


def _version_lines() -> str:
    """`--version`'s two lines, in tensorflow_model_server's format."""
    import importlib.metadata

    import tensorflow as tf

    try:
        ours = importlib.metadata.version("rnnserve")
    except importlib.metadata.PackageNotFoundError:  # run from a source tree
        ours = "unknown"
    return f"TensorFlow ModelServer: {ours} (rnnserve)\nTensorFlow Library: {tf.__version__}"


def _serve(args: argparse.Namespace) -> int:
    import logging

    from rnnserve.errors import UserError
    from rnnserve.serving.config import options_from_flags
    from rnnserve.serving.errors import ConfigError, ServingError
    from rnnserve.serving.server import ModelServer

    if args.version:
        print(_version_lines(), flush=True)
        return 0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        options = options_from_flags(args)
    except ConfigError as error:
        raise UserError(str(error)) from None
    if options.not_applicable:
        logging.getLogger("rnnserve.serving").info(
            "Not applicable on this server (no GPU, TPU, TFLite, ALTS, custom thread pools or other "
            "platforms), ignored: %s",
            ", ".join(options.not_applicable),
        )
    try:
        server = ModelServer(options).start()
    except ServingError as error:
        raise UserError(f"Failed to start server: {error.code}: {error.message}") from None
    server.serve_forever(announce=lambda line: print(line, flush=True))
    return 0


def _client_command(name: str):
    def run(args: argparse.Namespace) -> int:
        from rnnserve.serving import cli_client

        return getattr(cli_client, name)(args)

    return run


def _add_client_flags(parser: argparse.ArgumentParser, model_required: bool = True) -> None:
    parser.add_argument(
        "--server",
        default="127.0.0.1:8500",
        help="host:port of the gRPC API (or of REST with --rest). Default 127.0.0.1:8500.",
    )
    parser.add_argument("--model", required=model_required, help="Model name.")
    parser.add_argument("--rest", action="store_true", help="Use the REST API instead of gRPC.")
    parser.add_argument("--timeout", type=float, default=30.0, help="Seconds per call. Default 30.")
    parser.add_argument("--ca", help="PEM file of the CA to trust: talk TLS to the gRPC server.")


def _add_version_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--version", type=int, help="Model version (default: the latest).")
    group.add_argument("--label", help="Model version label.")


def register(subparsers) -> None:
    """Adds every serving subcommand to the `rnnserve` parser."""
    register_server(subparsers)
    register_clients(subparsers)


def register_server(subparsers) -> None:
    """Adds `serve` to the `rnnserve` parser (needs the full install: TF Serving's config protos)."""
    from rnnserve.serving.config import add_server_flags

    serve = subparsers.add_parser(
        "serve",
        help="Run the TF-Serving-compatible server (gRPC + REST).",
        description="Serve SavedModels like tensorflow_model_server: same flags (--flag=value, "
        "booleans --flag or --flag=true|false), same APIs.",
        allow_abbrev=False,
    )
    add_server_flags(serve)
    serve.set_defaults(func=_serve)


def register_clients(subparsers) -> None:
    """Adds `predict`, `status`, `metadata` and `generate` to the `rnnserve` parser."""
    predict = subparsers.add_parser("predict", help="Call a signature of a served model.")
    _add_client_flags(predict)
    _add_version_flags(predict)
    predict.add_argument(
        "--signature", default="serving_default", help="Signature name. Default serving_default."
    )
    predict.add_argument(
        "--input",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="An input: JSON (cast to the signature's dtype) or @file.npy. Repeat per input.",
    )
    predict.add_argument(
        "--output_filter",
        action="append",
        default=[],
        metavar="NAME",
        help="Only return this output (repeatable).",
    )
    predict.add_argument("--json", action="store_true", help="Print outputs as one JSON object.")
    predict.set_defaults(func=_client_command("predict"))

    status = subparsers.add_parser("status", help="Show the state of a served model's versions.")
    _add_client_flags(status)
    _add_version_flags(status)
    status.set_defaults(func=_client_command("status"))

    metadata = subparsers.add_parser("metadata", help="Show a served model's signatures.")
    _add_client_flags(metadata)
    _add_version_flags(metadata)
    metadata.set_defaults(func=_client_command("metadata"))

    generate = subparsers.add_parser(
        "generate", help="Generate text from a served language model, streaming."
    )
    _add_client_flags(generate)
    generate.add_argument("--prompt", required=True, help="Text the generation continues.")
    generate.add_argument("--max-new-tokens", type=int, default=200, help="Tokens to generate. Default 200.")
    generate.add_argument("--temperature", type=float, default=0.8, help="0 is greedy. Default 0.8.")
    generate.add_argument(
        "--top-k", type=int, default=0, help="Keep the k likeliest tokens (0 = all). Default 0."
    )
    generate.add_argument("--seed", type=int, default=0, help="Sampling seed. Default 0.")
    generate.add_argument(
        "--chunk", type=int, default=16, help="Tokens per call (streamed or generate). Default 16."
    )
    generate.add_argument(
        "--stop",
        action="append",
        default=[],
        metavar="STRING",
        help="End the text just before this string (repeatable).",
    )
    generate.add_argument(
        "--server-state",
        action="store_true",
        help="Keep the sequence's state on the server (the embedded server's server-side sequences).",
    )
    generate.add_argument(
        "--no-stream",
        action="store_true",
        help="Use generate calls even when the server offers streaming.",
    )
    generate.set_defaults(func=_client_command("generate"))
