"""`rnnserve export` and `rnnserve inspect`.

    rnnserve export --run runs/charlm-1 --export-base exports/charlm [--version N]
    rnnserve export --keras-model lm.keras --vocab vocab.json --export-base exports/lm
    rnnserve export --keras-model classifier.h5 --export-base exports/classifier
    rnnserve inspect exports/charlm            # or exports/charlm/3

Nothing heavy is imported until a command runs.
"""

from __future__ import annotations

import argparse
import sys

from rnnserve.errors import UserError
from rnnserve.training.export import CONTRACTS, DEFAULT_MAX_NEW_TOKENS_LIMIT

_BAR_WIDTH = 24
_EPILOG = """\
A Keras model file (--keras-model) may be a Keras 3 .keras file or a Keras 2
(tf.keras, TensorFlow <= 2.15) .keras or .h5 file. A language model
([StringLookup or TextVectorization ->] Embedding -> SimpleRNN/LSTM/GRU with
return_sequences=True -> Dense giving logits or softmax probabilities) gets
the serving_default, step, generate, generate_text, encode and decode
signatures; any other model (a classifier, a Bidirectional encoder, Conv1D
layers, several inputs) one serving_default of its own input and output
names.

The vocabulary (--vocab) maps token ids to text. It may be rnnserve's own
format, {"level": "char"|"word", "tokens": ["[UNK]", ...]} (id i is the i-th
token), a JSON list of tokens (StringLookup.get_vocabulary() or
TextVectorization.get_vocabulary()), or a JSON {token: id} mapping
(Tokenizer.word_index; a missing id 0 becomes [UNK]). The unknown token
[UNK] is id 0, or id 1 after the padding token "" at id 0 (Keras' layout);
neither is ever generated. A list or mapping is character level when every
token is one character, else word level. A model whose first layer is a
StringLookup or a TextVectorization (output_mode="int", split="character" or
"whitespace") needs no --vocab: its text signatures use the layer's own.
"""


def register(subparsers):
    """Adds `export` and `inspect` to the `rnnserve` parser."""
    export = subparsers.add_parser(
        "export",
        help="write a SavedModel version for TF Serving",
        description="Export a training run (or a Keras model file) as BASE/<version>.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    source = export.add_mutually_exclusive_group(required=True)
    source.add_argument("--run", metavar="RUN_DIR", help="a run directory written by `rnnserve train`")
    source.add_argument(
        "--keras-model", metavar="FILE", help="a Keras model file: .keras (Keras 3 or 2) or .h5 (Keras 2)"
    )
    export.add_argument(
        "--vocab",
        metavar="VOCAB.json",
        help="the vocabulary of a --keras-model language model (formats below; default: its StringLookup)",
    )
    export.add_argument(
        "--custom-objects",
        action="append",
        default=[],
        metavar="MODULE",
        help="a module (or .py file) defining the model's own layer classes; repeatable",
    )
    export.add_argument(
        "--contract",
        choices=CONTRACTS,
        default="auto",
        help="--keras-model signatures: auto (default) = the language-model ones when the model is a "
        "language model, else plain; language-model = those or an error; plain = serving_default only",
    )
    export.add_argument(
        "--from-checkpoint",
        action="store_true",
        help="with --run: export the run's newest checkpoint instead of model.keras (an interrupted run)",
    )
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


def print_notice(message):
    """Prints a one-line note about an export on stderr."""
    print(f"rnnserve export: note: {message}", file=sys.stderr, flush=True)


def run_export(args):
    """`rnnserve export`: prints the published version directory."""
    if args.run and (args.vocab or args.custom_objects or args.contract != "auto"):
        raise UserError(
            "--vocab, --custom-objects and --contract go with --keras-model; a run directory has its own "
            "vocab.json and model."
        )
    if args.keras_model and args.from_checkpoint:
        raise UserError("--from-checkpoint goes with --run; --keras-model is the file to export.")
    from rnnserve.training.export.runs import export_keras_model, export_run

    options = {
        "version": args.version,
        "max_new_tokens_limit": args.max_new_tokens_limit,
        "progress": print_progress,
    }
    if args.run:
        path = export_run(args.run, args.export_base, from_checkpoint=args.from_checkpoint, **options)
    else:
        path = export_keras_model(
            args.keras_model,
            args.vocab,
            args.export_base,
            custom_objects=args.custom_objects,
            contract=args.contract,
            notify=print_notice,
            **options,
        )
    print(path)


def run_inspect(args):
    """`rnnserve inspect`: prints an export's signatures and metadata."""
    from rnnserve.training.export.inspect import describe

    print(describe(args.path))
