"""The `rnnserve` command: one entry point, one subcommand per job.

Each package registers its own subcommands from its `cli` module; this file
only dispatches: it reads the command's name from argv and imports just the
module that registers it. So `rnnserve --help` (a static table) and the
client commands (`generate`, `predict`, `status`, `metadata`) never import
TensorFlow or Keras, and work in the client-only install (`pip install
rnnserve`); the other commands need `pip install 'rnnserve[full]'` and say so
in one line when it is missing.

Typical use::

    rnnserve train charlm --epochs 3
    rnnserve export --run runs/charlm-20261125-101500 --export-base exports/charlm
    rnnserve serve --model_name charlm --model_base_path exports/charlm
    rnnserve generate --server 127.0.0.1:8500 --model charlm --prompt "The "
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib
import importlib.util
import os
import sys

from rnnserve.errors import UserError
from rnnserve.quiet_tensorflow import DEFAULT_LOG_LEVEL, import_tensorflow_quietly, startup_noise_filtered


@dataclasses.dataclass(frozen=True)
class Command:
    """A subcommand: the `module:function` that registers it, its one-line help, whether it is a client."""

    register: str
    help: str
    client: bool = False


# A register function takes argparse's subparsers, adds its commands and sets
# `func` on each (called with the parsed namespace; returns an exit status or None).
COMMANDS = {
    "train": Command("rnnserve.training.cli:register", "Train a task; writes a run directory."),
    "export": Command("rnnserve.training.export.cli:register", "Write a SavedModel version for TF Serving."),
    "inspect": Command("rnnserve.training.export.cli:register", "Show an export's signatures and metadata."),
    "serve": Command(
        "rnnserve.serving.cli:register_server", "Run the TF-Serving-compatible server (gRPC + REST)."
    ),
    "predict": Command("rnnserve.serving.cli:register_clients", "Call a signature of a served model.", True),
    "status": Command(
        "rnnserve.serving.cli:register_clients", "Show the state of a served model's versions.", True
    ),
    "metadata": Command("rnnserve.serving.cli:register_clients", "Show a served model's signatures.", True),
    "generate": Command(
        "rnnserve.serving.cli:register_clients",
        "Generate text from a served language model, streaming.",
        True,
    ),
    "demo": Command("rnnserve.demo:register", "Train, export, serve and query a char LM (make demo)."),
    "bench": Command(
        "rnnserve.benchmarks.cli:register", "Benchmark rnnserve against PyTorch and Keras built-ins."
    ),
}

# Top-level modules of the `full` extra: a command that imports one of them
# in the client-only install is told to install the extra.
FULL_INSTALL_MODULES = frozenset(
    {"tensorflow", "tensorflow_serving", "keras", "tensorboard", "prometheus_client", "matplotlib"}
)
FULL_INSTALL = "pip install 'rnnserve[full]' (from a clone: pip install '.[full]')"


def usage() -> str:
    """The top-level help: every command with its one-line description (no module imported)."""
    width = max(len(name) for name in COMMANDS)
    lines = [
        "usage: rnnserve COMMAND [options]   (rnnserve COMMAND --help for a command's options)",
        "",
        "Train, export and serve recurrent networks.",
        "",
        "commands:",
    ]
    lines += [f"  {name:<{width}}  {command.help}" for name, command in COMMANDS.items()]
    lines += [
        "",
        f"The client commands ({', '.join(n for n, c in COMMANDS.items() if c.client)}) work in the "
        "client-only install;",
        f"the others need TensorFlow: {FULL_INSTALL}.",
    ]
    return "\n".join(lines) + "\n"


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (and still exit status 2)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class MissingFullInstall(UserError):
    """A command that needs the `full` extra, run in the client-only install."""

    def __init__(self, command: str, module: str):
        super().__init__(
            f"`rnnserve {command}` needs TensorFlow and the training/serving stack (no module "
            f"'{module}' here); install them with: {FULL_INSTALL}"
        )


def _missing_full_module(error: ModuleNotFoundError) -> str | None:
    top = (error.name or "").split(".")[0]
    return top if top in FULL_INSTALL_MODULES else None


def build_parser(command: str) -> argparse.ArgumentParser:
    """The `rnnserve` parser with `command` (a key of COMMANDS) and its sibling commands registered.

    Only the module registering `command` is imported.

    Raises:
        MissingFullInstall: the module needs a package of the `full` extra that is not installed.
    """
    module_name, _, function = COMMANDS[command].register.partition(":")
    parser = _Parser(prog="rnnserve", description="Train, export and serve recurrent networks.")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    try:
        getattr(importlib.import_module(module_name), function)(subparsers)
    except ModuleNotFoundError as error:
        missing = _missing_full_module(error)
        if missing is None:
            raise
        raise MissingFullInstall(command, missing) from None
    return parser


def _command_name(argv: list[str]) -> str | None:
    """The subcommand named in argv: its first word that is not an option."""
    return next((arg for arg in argv if not arg.startswith("-")), None)


def main(argv: list[str] | None = None) -> int:
    """Runs one `rnnserve` subcommand; returns the process exit status."""
    argv = sys.argv[1:] if argv is None else argv
    command = _command_name(argv)
    if command is None:
        asked = any(arg in ("-h", "--help") for arg in argv)
        (sys.stdout if asked else sys.stderr).write(usage())
        return 0 if asked else 2
    if command not in COMMANDS:
        print(
            f"rnnserve: error: unknown command '{command}'; it is one of {', '.join(COMMANDS)} "
            "(see rnnserve --help)",
            file=sys.stderr,
        )
        return 2
    full = not COMMANDS[command].client
    if full:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", DEFAULT_LOG_LEVEL)
    try:
        if full and importlib.util.find_spec("tensorflow") is None:  # the client-only install
            raise MissingFullInstall(command, "tensorflow")
        # --help and usage errors answer before TensorFlow loads (where the parser needs none).
        with startup_noise_filtered() if full else contextlib.nullcontext():
            args = build_parser(command).parse_args(argv)
        # A command may set preload_tensorflow=False: it imports TensorFlow itself (after
        # printing what it is doing) or never.
        if full and getattr(args, "preload_tensorflow", True):
            try:
                import_tensorflow_quietly()
            except ModuleNotFoundError as error:
                raise MissingFullInstall(command, error.name or "tensorflow") from None
        status = args.func(args)
    except UserError as error:
        print(f"rnnserve {command}: error: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print(f"rnnserve {command}: interrupted", file=sys.stderr)
        return 130
    return 0 if status is None else int(status)


if __name__ == "__main__":
    raise SystemExit(main())
