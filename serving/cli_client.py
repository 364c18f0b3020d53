"""The client commands: `rnnserve predict`, `status`, `metadata`, `generate`.

Each takes the parsed flags of `serving.cli`, talks to the server through
`PredictionClient` (or `RestClient` with `--rest`) and prints plain text.
Server errors and bad flags become one-line `UserError`s (exit status 2).

Example::

    $ rnnserve status --server 127.0.0.1:8500 --model charlm
    version 1: AVAILABLE
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from rnnserve import contract
from rnnserve.errors import UserError
from rnnserve.serving.errors import ServingError

MAX_GENERATE_TOKENS = 100_000  # a CLI run never asks for more than this


def _client(args: argparse.Namespace):
    if args.rest:
        from rnnserve.serving.rest_client import RestClient

        return RestClient(args.server, timeout=args.timeout)
    from rnnserve.serving.client import PredictionClient, tls_credentials

    credentials = None
    if args.ca:
        try:
            with open(args.ca, "rb") as handle:
                credentials = tls_credentials(handle.read())
        except OSError as error:
            raise UserError(f"--ca file '{args.ca}' cannot be read ({error.strerror}).") from None
    return PredictionClient(args.server, timeout=args.timeout, credentials=credentials)


def _user_error(error: ServingError, args: argparse.Namespace) -> UserError:
    from rnnserve.serving.client import HttpPortError
    from rnnserve.serving.rest_client import NotHttpError

    if isinstance(error, HttpPortError):
        return UserError(f"{args.server}: this is an HTTP port; use --rest or the gRPC port.")
    if isinstance(error, NotHttpError):
        return UserError(
            f"{args.server}: this is not an HTTP port (gRPC?); drop --rest or use the REST port."
        )
    return UserError(f"{args.server}: {error.code}: {error.message}")


def _parse_inputs(specs: list[str], signature) -> dict:
    inputs = {}
    for spec in specs:
        name, sep, value = spec.partition("=")
        if not sep or not name:
            raise UserError(f"--input '{spec}' is not NAME=VALUE; e.g. --input tokens='[[5,6,7]]'.")
        if name not in signature.inputs:
            raise UserError(
                f"--input {name}: the signature has no such input; it takes {sorted(signature.inputs)}."
            )
        dtype = signature.inputs[name].dtype
        if value.startswith("@"):
            try:
                inputs[name] = np.load(value[1:], allow_pickle=False)
            except (OSError, ValueError) as error:
                raise UserError(f"--input {name}: cannot load '{value[1:]}' as .npy ({error}).") from None
            continue
        try:
            parsed = json.loads(value)
        except ValueError:
            raise UserError(
                f"--input {name}: '{value}' is not JSON; quote strings, e.g. '[\"text\"]'."
            ) from None
        try:
            if dtype == object:
                flat = np.asarray(parsed, dtype=object)
                inputs[name] = (
                    np.vectorize(lambda s: str(s).encode("utf-8"), otypes=[object])(flat)
                    if flat.size
                    else flat
                )
            else:
                inputs[name] = np.asarray(parsed, dtype=dtype)
        except (TypeError, ValueError) as error:
            raise UserError(f"--input {name}: cannot convert '{value}' to {dtype} ({error}).") from None
    return inputs


def _print_array(name: str, array: np.ndarray) -> None:
    print(f"{name}: {array.dtype} {list(array.shape)}")
    print(np.array2string(array, threshold=200, edgeitems=4))


def predict(args: argparse.Namespace) -> int:
    """`rnnserve predict`: run one signature and print its outputs."""
    client = _client(args)
    try:
        metadata = client.metadata(args.model, version=args.version, version_label=args.label)
        if args.signature not in metadata.signatures:
            raise UserError(
                f"model {args.model} has no signature '{args.signature}'; it has {sorted(metadata.signatures)}."
            )
        inputs = _parse_inputs(args.input, metadata.signatures[args.signature])
        outputs = client.predict(
            args.model,
            inputs,
            signature_name=args.signature,
            output_filter=args.output_filter,
            version=args.version,
            version_label=args.label,
        )
    except ServingError as error:
        raise _user_error(error, args) from None
    if args.json:

        def plain(array):
            if array.dtype == object:
                return np.vectorize(lambda b: bytes(b).decode("utf-8", "replace"), otypes=[object])(
                    array
                ).tolist()
            return array.tolist()

        print(json.dumps({name: plain(value) for name, value in sorted(outputs.items())}))
    else:
        for name, value in sorted(outputs.items()):
            _print_array(name, value)
    return 0


def status(args: argparse.Namespace) -> int:
    """`rnnserve status`: one line per version."""
    try:
        versions = _client(args).status(args.model, version=args.version, version_label=args.label)
    except ServingError as error:
        raise _user_error(error, args) from None
    for entry in versions:
        line = f"version {entry.version}: {entry.state}"
        if entry.error_code != "OK":
            line += f" ({entry.error_code}: {entry.error_message})"
        print(line)
    return 0


def metadata(args: argparse.Namespace) -> int:
    """`rnnserve metadata`: each signature's inputs and outputs."""
    try:
        info = _client(args).metadata(args.model, version=args.version, version_label=args.label)
    except ServingError as error:
        raise _user_error(error, args) from None
    print(f"model {info.name} version {info.version}")
    for name in sorted(info.signatures):
        signature = info.signatures[name]
        print(f"signature {name} ({signature.method_name or 'no method'})")
        for kind, tensors in (("input ", signature.inputs), ("output", signature.outputs)):
            for alias, tensor in sorted(tensors.items()):
                shape = (
                    "unknown rank"
                    if tensor.shape is None
                    else "(" + ", ".join("?" if d is None else str(d) for d in tensor.shape) + ")"
                )
                dtype = "string" if tensor.dtype == object else tensor.dtype
                print(f"  {kind} {alias}: {dtype} {shape}")
    return 0


def generate(args: argparse.Namespace) -> int:
    """`rnnserve generate`: stream text, one `generate` call per chunk."""
    from rnnserve.serving.session import Session

    if not args.prompt:
        raise UserError("--prompt must not be empty: generation continues a text.")
    if not 1 <= args.max_new_tokens <= MAX_GENERATE_TOKENS:
        raise UserError(f"--max-new-tokens must be in [1, {MAX_GENERATE_TOKENS}], got {args.max_new_tokens}.")
    if args.temperature < 0:
        raise UserError(f"--temperature must be >= 0, got {args.temperature}.")
    if args.top_k < 0:
        raise UserError(f"--top-k must be >= 0, got {args.top_k}.")
    if args.chunk < 1:
        raise UserError(f"--chunk must be >= 1, got {args.chunk}.")
    try:
        session = Session(_client(args), args.model, seed=args.seed)
        if not session.has_text:
            raise UserError(
                f"model {args.model} has no encode/decode signatures, so it cannot take a text prompt."
            )
        tokens = session.encode(args.prompt)
        unknown = unknown_characters(args.prompt, tokens[0])
        if unknown:
            print(
                f"rnnserve generate: note: the model's vocabulary has no {', '.join(map(repr, unknown))}; "
                "the prompt feeds them as [UNK].",
                file=sys.stderr,
            )
        session.feed(tokens)
        _stream(session, args)
    except ServingError as error:
        raise _user_error(error, args) from None
    except ValueError as error:
        raise UserError(str(error)) from None
    return 0


def unknown_characters(prompt: str, tokens) -> list[str]:
    """The distinct characters of `prompt` that `encode` turned into [UNK], in order of appearance.

    Exact for character-level vocabularies (one token per character). With
    a word-level one the tokens are words, so the characters cannot be named:
    "[UNK] x N" (N unknown words) is returned instead.

    Example:

    >>> unknown_characters("café", [3, 1, 6, 0])   # 0 is [UNK]
    ['é']
    """
    tokens = [int(token) for token in tokens]
    if contract.UNK_TOKEN_ID not in tokens:
        return []
    if len(tokens) != len(prompt):
        return [f"[UNK] x {tokens.count(contract.UNK_TOKEN_ID)}"]
    unknown = [char for char, token in zip(prompt, tokens) if token == contract.UNK_TOKEN_ID]
    return list(dict.fromkeys(unknown))


def _stream(session, args: argparse.Namespace) -> None:
    """Writes the prompt, then each decoded chunk as it comes; always ends the line.

    The final newline is written even when a call fails or the user presses
    Ctrl-C, so an error message (on stderr) starts on a line of its own.
    """
    sys.stdout.write(args.prompt)  # the text continues the prompt, as it will be read
    sys.stdout.flush()
    try:
        for chunk in session.stream(
            args.max_new_tokens, args.chunk, temperature=args.temperature, top_k=args.top_k
        ):
            sys.stdout.write(session.decode(chunk)[0])
            sys.stdout.flush()
    finally:
        sys.stdout.write("\n")
        sys.stdout.flush()
