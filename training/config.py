"""`TrainConfig`: everything one training run is asked to do, as one typed record.

Each task has its own subclass (`CharLMConfig`, `HelloConfig`, ...) that
adds its flags and sets its own defaults. `rnnserve train TASK` turns every
field into a flag (`training/cli.py`) and builds the config once; the
trainer and every task hook read it; config.json stores it as
`dataclasses.asdict` under "train_config", so `--resume` needs nothing else
and may change only the fields marked `on_resume`.

    config = CharLMConfig(units=128, epochs=5)
    config.batch_size                       # 32
    dataclasses.asdict(config)["units"]     # 128

This module imports neither TensorFlow nor Keras, so `rnnserve train --help`
and argument errors answer at once.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import ClassVar

from rnnserve.errors import UserError
from rnnserve.training.arguments import fraction, non_negative_float, positive_float, positive_int, rate
from rnnserve.training.vocab import LEVELS

# The names of `rnnserve.models.CELLS` (a test keeps the two equal; the CLI
# lists them without importing Keras).
CELL_NAMES = ("rnn", "lstm", "gru", "peephole_lstm", "coupled_lstm")
BATCHING_SCHEMES = ("random", "sequential")
STRATEGIES = ("default", "mirrored", "multiworker")
OPTIMIZERS = ("adam", "sgd")
VERBOSITIES = (0, 1, 2)

# config.json: format 2 stores the config under "train_config"; format 1
# stored the same fields under "args" and is still read.
CONFIG_FORMAT = 2
_CONFIG_KEYS = {1: "args", 2: "train_config"}


def option(default, help, *, type=None, choices=None, metavar=None, group="training", on_resume=False):
    """A config field that is also a command-line flag.

    Args:
        default: The field's default.
        help: What the flag means, for `--help` (the default is appended).
        type: The argparse type that parses and checks the flag's text.
        choices: The allowed values, if a fixed set.
        metavar: The value's name in `--help`.
        group: The `--help` section: "model", "training", "data", "sampling"
            or "run".
        on_resume: `--resume` may change it (everything else is recorded).
    """
    metadata = {"help": help, "type": type, "choices": choices, "metavar": metavar}
    metadata.update(group=group, on_resume=on_resume)
    return field(default=default, metadata=metadata)


@dataclass
class TrainConfig:
    """The fields every task has. Subclasses add their own and reset defaults.

    Class attributes:
        task: The `rnnserve train` subcommand.
        help: One line for `--help`.
    """

    task: ClassVar[str] = ""
    help: ClassVar[str] = ""

    cell: str = option(
        "lstm",
        "recurrent cell: rnn (Elman, like keras.layers.SimpleRNN), lstm, gru, peephole_lstm or coupled_lstm",
        choices=CELL_NAMES,
        group="model",
    )
    units: int = option(
        64,
        "size of each recurrent layer's state (Keras `units`)",
        type=positive_int,
        metavar="N",
        group="model",
    )
    layers: int = option(
        1, "number of stacked recurrent layers", type=positive_int, metavar="N", group="model"
    )
    epochs: int = option(10, "passes over the training data", type=positive_int, metavar="N", on_resume=True)
    batch_size: int = option(32, "examples (sequences) per training batch", type=positive_int, metavar="N")
    lr: float = option(1e-3, "learning rate of the optimizer", type=positive_float, metavar="RATE")
    optimizer: str = option("adam", "optimizer: adam or sgd", choices=OPTIMIZERS)
    # Recurrent gradients can explode over long sequences (Pascanu et al., 2013):
    # clipping their global norm keeps one bad batch from undoing training.
    clip_norm: float = option(
        1.0,
        "clip the gradients' global norm to this value (Keras `global_clipnorm`); 0 turns clipping off",
        type=non_negative_float,
        metavar="NORM",
    )
    seed: int = option(0, "seeds the data order, the initial weights and sampling", type=int, metavar="N")
    time_budget: float | None = option(
        None,
        "stop cleanly after this many seconds of training; the last epoch is saved, marked partial "
        "(default: no limit)",
        type=positive_float,
        metavar="SECONDS",
        on_resume=True,
    )
    strategy: str = option(
        "default",
        "tf.distribute strategy: default (one device), mirrored (every device of this machine) "
        "or multiworker (several processes; reads TF_CONFIG)",
        choices=STRATEGIES,
    )
    export_base: str | None = option(
        None,
        "after training, export a SavedModel version into this directory (default: no export)",
        metavar="BASE",
        group="run",
        on_resume=True,
    )
    # None: progress bars on a terminal, one line per epoch in a log file.
    verbose: int | None = option(
        None,
        "0 silent, 1 progress bars, 2 one line per epoch "
        "(default: progress bars on a terminal, one line per epoch otherwise)",
        type=int,
        choices=VERBOSITIES,
        group="run",
        on_resume=True,
    )


@dataclass
class CharLMConfig(TrainConfig):
    """`charlm`: a character or word language model of a text corpus."""

    task: ClassVar[str] = "charlm"
    help: ClassVar[str] = "character/word language model of a corpus (perplexity, sampled text)"

    units: int = 256  # enough for a char model to learn words and punctuation in minutes on a CPU
    epochs: int = 20
    lr: float = 2e-3  # char-rnn's default (Karpathy, 2015); stable with clip_norm
    corpus: str | None = option(
        None, "UTF-8 text file to train on (default: the built-in corpus)", metavar="FILE", group="data"
    )
    level: str = option("char", "tokens are characters (char) or words (word)", choices=LEVELS, group="data")
    max_vocab: int | None = option(
        None,
        "keep only this many of the most frequent tokens; the others become [UNK] (default: keep all)",
        type=positive_int,
        metavar="N",
        group="data",
    )
    # How far back the gradient reaches (truncated BPTT) and what one window sees.
    seq_len: int = option(
        64, "tokens per training window (sequence length)", type=positive_int, metavar="N", group="data"
    )
    batching: str = option(
        "random",
        "random: independent windows, the state starts from zeros every batch; "
        "sequential: each batch continues the previous one and the state is carried over (stateful)",
        choices=BATCHING_SCHEMES,
        group="data",
    )
    # The end of the text: validation windows never overlap training windows.
    val_fraction: float = option(
        0.1,
        "share of the text, taken from its end, held out for validation",
        type=fraction,
        metavar="FRACTION",
        group="data",
    )
    embedding_dim: int = option(
        64,
        "size of each token's embedding vector (Keras `Embedding` output_dim)",
        type=positive_int,
        metavar="N",
        group="model",
    )
    dropout: float = option(
        0.0,
        "dropout rate between stacked recurrent layers (no effect with --layers 1)",
        type=rate,
        metavar="RATE",
        group="model",
    )
    prompt: str = option(
        "The ", "text the sample printed after every epoch starts from", metavar="TEXT", group="sampling"
    )
    sample_length: int = option(
        200, "tokens sampled after every epoch", type=positive_int, metavar="N", group="sampling"
    )
    # Slightly sharper than the model's own distribution: fewer garbled words.
    temperature: float = option(
        0.8,
        "sampling temperature of the per-epoch sample; 0 always picks the likeliest token",
        type=non_negative_float,
        metavar="T",
        group="sampling",
    )


@dataclass
class HelloConfig(TrainConfig):
    """`hello`: one-hot "hello" in, "ohlol" out (N→N)."""

    task: ClassVar[str] = "hello"
    help: ClassVar[str] = 'the classic toy: one-hot "hello" in, "ohlol" out'

    cell: str = "rnn"  # an Elman RNN is enough; the toy shows it needs memory
    units: int = 8
    epochs: int = 15
    batch_size: int = 1  # the data set is one example
    lr: float = 0.1  # one example, five steps: large steps converge in a few hundred updates


@dataclass
class ClassifyConfig(TrainConfig):
    """`classify` (N→1): the most frequent of a, b, c in a padded sequence."""

    task: ClassVar[str] = "classify"
    help: ClassVar[str] = "N→1: the most frequent of a, b, c in a padded sequence"

    cell: str = "gru"
    units: int = 32
    epochs: int = 8
    batch_size: int = 64
    lr: float = 5e-3


@dataclass
class Seq2SeqConfig(TrainConfig):
    """`seq2seq` (N→M): reverse digit strings with an encoder–decoder."""

    task: ClassVar[str] = "seq2seq"
    help: ClassVar[str] = "N→M: reverse digit strings with an encoder-decoder"

    units: int = 128  # the decoder's state must hold the whole string
    epochs: int = 6
    batch_size: int = 128
    lr: float = 1e-2


@dataclass
class RegressConfig(TrainConfig):
    """`regress` (N→N reals): one-step-ahead forecasts of noisy seasonal series."""

    task: ClassVar[str] = "regress"
    help: ClassVar[str] = "N→N reals: forecast noisy seasonal series one step ahead (MSE)"

    units: int = 32
    batch_size: int = 64
    lr: float = 5e-3


@dataclass
class CondGenConfig(TrainConfig):
    """`condgen` (1→N): a (start, step) vector generates a digit progression."""

    task: ClassVar[str] = "condgen"
    help: ClassVar[str] = "1→N: a (start, step) vector generates a digit progression"

    batch_size: int = 64
    lr: float = 5e-3


TASK_CONFIGS = {
    cls.task: cls
    for cls in (CharLMConfig, HelloConfig, ClassifyConfig, Seq2SeqConfig, RegressConfig, CondGenConfig)
}


def option_metadata(config_class, name):
    """The `option` metadata of field `name`, from the class that declared it
    (a subclass that only changes the default keeps its parent's help)."""
    for cls in config_class.__mro__:
        declared = getattr(cls, "__dataclass_fields__", {}).get(name)
        if declared is not None and "help" in declared.metadata:
            return declared.metadata
    raise KeyError(name)


def resume_fields(config_class):
    """The fields `--resume` may change, in declaration order."""
    return [
        f.name for f in dataclasses.fields(config_class) if option_metadata(config_class, f.name)["on_resume"]
    ]


def with_resume_overrides(config, overrides):
    """`config` with the `on_resume` fields of `overrides` (a dict) replaced.

    Raises:
        UserError: `overrides` names a field `--resume` may not change.
    """
    allowed = resume_fields(type(config))
    fixed = sorted(set(overrides) - set(allowed))
    if fixed:
        flags = ", ".join("--" + name.replace("_", "-") for name in fixed)
        may = ", ".join("--" + name.replace("_", "-") for name in allowed)
        raise UserError(
            f"--resume continues a run with the settings it was started with, so {flags} cannot be given "
            f"(only {may} can change); start a new run with --out to change them."
        )
    return dataclasses.replace(config, **overrides)


def to_run_config(config, model, task_options):
    """The content of config.json for a new run of `config`.

    Args:
        config: The run's `TrainConfig`.
        model: The model builder's name and keyword arguments.
        task_options: Facts the exporter needs beyond the model.
    """
    return {
        "format": CONFIG_FORMAT,
        "task": config.task,
        _CONFIG_KEYS[CONFIG_FORMAT]: dataclasses.asdict(config),
        "model": model,
        "task_options": task_options,
    }


def from_run_config(content, where):
    """The `TrainConfig` recorded in config.json `content` (format 1 or 2).

    Fields added after the run was recorded take their defaults.

    Args:
        content: The parsed config.json.
        where: The run directory, for error messages.

    Raises:
        UserError: an unknown format or task, or fields this version lacks.
    """
    key = _CONFIG_KEYS.get(content.get("format"))
    config_class = TASK_CONFIGS.get(content.get("task"))
    if key is None or config_class is None or not isinstance(content.get(key), dict):
        raise UserError(
            f"{where}/config.json is not a training configuration this version can read "
            f"(format {content.get('format')!r}, task {content.get('task')!r})."
        )
    recorded = content[key]
    known = {f.name for f in dataclasses.fields(config_class)}
    unknown = sorted(set(recorded) - known)
    if unknown:
        raise UserError(
            f"{where}/config.json records settings this version does not know ({', '.join(unknown)}); "
            "resume it with the version that started it."
        )
    return config_class(**recorded)
