"""`rnnserve export` and `rnnserve inspect`.

    rnnserve export --run runs/charlm-1 --export-base exports/charlm [--version N]
    rnnserve export --keras-model lm.keras --vocab vocab.json --export-base exports/lm
    rnnserve inspect exports/charlm            # or exports/charlm/3

Nothing heavy is imported until a command runs.
"""

from __future__ import annotations

import sys

from rnnserve.errors import UserError
from rnnserve.training.export import DEFAULT_MAX_NEW_TOKENS_LIMIT

_BAR_WIDTH = 24


def register(subparsers):
    """Adds `export` and `inspect` to the `rnnserve` parser."""
    export = subparsers.add_parser(
        "export",
        help="write a SavedModel version for TF Serving",
        description="Export a training run (or a Keras language model file) as BASE/<version>.",
    )
    source = export.add_mutually_exclusive_group(required=True)
    source.add_argument("--run", metavar="RUN_DIR", help="a run directory written by `rnnserve train`")
    source.add_argument("--keras-model", metavar="FILE.keras", help="a Keras language model file")
    export.add_argument("--vocab", metavar="VOCAB.json", help="the vocabulary of --keras-model")
    export.add_argument("--export-base", required=True, metavar="BASE", help="the directory TF Serving polls")
    export.add_argument(
        "--version", type=int, metavar="N", help="version number (default: 1 + the highest in BASE)"
    )
    export.add_argument(
        "--max-new-tokens-limit",
        type=int,
        default=DEFAULT_MAX_NEW_TOKENS_LIMIT,
        metavar="N",
        help=f"largest max_new_tokens a generate request may ask for (default: {DEFAULT_MAX_NEW_TOKENS_LIMIT})",
    )
    export.set_defaults(func=run_export)

    inspect = subparsers.add_parser(
        "inspect",
        help="show an export's signatures and metadata",
        description="Print the signatures (like `saved_model_cli show --all`) and rnnserve metadata.",
    )
    inspect.add_argument("path", metavar="BASE_OR_VERSION_DIR")
    inspect.set_defaults(func=run_inspect)


def print_progress(index, count, label):
    """Draws the export progress bar on stderr; pass it as `progress=` to `export_run`."""
    done = _BAR_WIDTH * index // count
    finished = index == count
    print(
        f"\rexport [{'=' * done}{'.' * (_BAR_WIDTH - done)}] {min(index + 1, count)}/{count} {label:<24}",
        end="\n" if finished else "",
        file=sys.stderr,
        flush=True,
    )


def run_export(args):
    if args.keras_model and not args.vocab:
        raise UserError("--keras-model needs --vocab VOCAB.json, the vocabulary its token ids come from.")
    if args.run and args.vocab:
        raise UserError("--vocab goes with --keras-model; a run directory has its own vocab.json.")
    from rnnserve.training.export.runs import export_keras_model, export_run

    options = {
        "version": args.version,
        "max_new_tokens_limit": args.max_new_tokens_limit,
        "progress": print_progress,
    }
    if args.run:
        path = export_run(args.run, args.export_base, **options)
    else:
        path = export_keras_model(args.keras_model, args.vocab, args.export_base, **options)
    print(path)


def run_inspect(args):
    from rnnserve.training.export.inspect import describe

    print(describe(args.path))
