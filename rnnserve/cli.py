"""The `rnnserve` command: one entry point, one subcommand per job.

Each package registers its own subcommands from its `cli` module; this file
only assembles them, importing just the module of the command being run, so
`rnnserve generate` (a gRPC client) never loads Keras or the training stack.

Typical use::

    rnnserve train charlm --epochs 3
    rnnserve export --run runs/charlm-20261125-101500 --export-base exports/charlm
    rnnserve serve --model_name charlm --model_base_path exports/charlm
    rnnserve generate --server 127.0.0.1:8500 --model charlm --prompt "The "
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from rnnserve.errors import UserError
from rnnserve.quiet_tensorflow import DEFAULT_LOG_LEVEL, import_tensorflow_quietly

# Each command, and the module that registers it (with its sibling commands).
# A module exposes `register(subparsers)`, which adds its commands and sets
# `func` (called with the parsed namespace; returns an exit status or None).
# Registering imports no TensorFlow. TensorFlow is imported (quietly) after
# the arguments parse, unless the command sets `preload_tensorflow=False`
# (it imports TensorFlow itself when it needs it, or never).
COMMANDS = {
    "train": "rnnserve.training.cli",
    "export": "rnnserve.training.export.cli",
    "inspect": "rnnserve.training.export.cli",
    "serve": "rnnserve.serving.cli",
    "predict": "rnnserve.serving.cli",
    "status": "rnnserve.serving.cli",
    "metadata": "rnnserve.serving.cli",
    "generate": "rnnserve.serving.cli",
    "demo": "rnnserve.demo",
    "bench": "rnnserve.benchmarks.cli",
}


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (and still exit status 2)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """Returns the `rnnserve` parser for `argv`.

    Only the module owning the command named in `argv` is imported (every
    module for `--help` or an unknown command), so a client command such as
    `rnnserve generate` never loads Keras, models/ or training/.
    """
    command = next((arg for arg in argv or [] if not arg.startswith("-")), None)
    modules = [COMMANDS[command]] if command in COMMANDS else list(dict.fromkeys(COMMANDS.values()))
    parser = _Parser(
        prog="rnnserve",
        description="Train, export and serve recurrent networks.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for module_name in modules:
        importlib.import_module(module_name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Runs one `rnnserve` subcommand; returns the process exit status."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", DEFAULT_LOG_LEVEL)
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(argv).parse_args(argv)  # --help and usage errors answer before TensorFlow loads
    try:
        if getattr(args, "preload_tensorflow", True):
            import_tensorflow_quietly()
        status = args.func(args)
    except UserError as error:
        print(f"rnnserve {args.command}: error: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print(f"rnnserve {args.command}: interrupted", file=sys.stderr)
        return 130
    return 0 if status is None else int(status)


if __name__ == "__main__":
    raise SystemExit(main())
