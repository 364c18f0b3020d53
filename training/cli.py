"""`rnnserve train TASK`: the command line of training/ (see trainer.py).

    rnnserve train charlm --epochs 5 --cell gru --units 128
    rnnserve train charlm --corpus my-text.txt --time-budget 60
    rnnserve train charlm --resume runs/charlm-20261125-101500
    rnnserve train hello

Every flag is a field of the task's `TrainConfig` (training/config.py), with
its default and meaning taken from there. Building the parser imports
neither TensorFlow nor Keras: `--help` and argument errors answer at once,
and TensorFlow loads only when training starts.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shlex
import sys

from rnnserve.errors import UserError
from rnnserve.quiet_tensorflow import import_tensorflow_quietly
from rnnserve.training.config import TASK_CONFIGS, option_metadata

# The --help sections, in order, and their titles.
GROUPS = {
    "model": "model",
    "training": "training",
    "data": "data",
    "sampling": "text sample after every epoch",
    "run": "run directory and output",
}


def flag_name(field_name):
    """`batch_size` → `--batch-size`."""
    return "--" + field_name.replace("_", "-")


def _help_text(metadata, default):
    text = metadata["help"]
    if default is not None and "(default:" not in text:
        shown = repr(default) if isinstance(default, str) and (not default or " " in default) else default
        text += f" (default: {shown})"
    return text.replace("%", "%%")


def _add_config_flags(parser, config_class):
    """One flag per field of `config_class`, grouped as in `GROUPS`.

    Defaults are shown in the help but not set on the namespace
    (`argparse.SUPPRESS`): the namespace holds exactly the flags given.
    """
    groups = {key: parser.add_argument_group(title) for key, title in GROUPS.items()}
    for config_field in dataclasses.fields(config_class):
        metadata = option_metadata(config_class, config_field.name)
        options = {key: metadata[key] for key in ("type", "choices", "metavar") if metadata[key] is not None}
        groups[metadata["group"]].add_argument(
            flag_name(config_field.name),
            dest=config_field.name,
            default=argparse.SUPPRESS,
            help=_help_text(metadata, config_field.default),
            **options,
        )
    run = groups["run"]
    run.add_argument(
        "--out",
        default=argparse.SUPPRESS,
        metavar="RUN_DIR",
        help="the run directory to create (default: runs/TASK-YYYYMMDD-HHMMSS)",
    )
    run.add_argument(
        "--resume",
        default=argparse.SUPPRESS,
        metavar="RUN_DIR",
        help="continue a run from its last checkpoint, with its recorded settings",
    )


def register(subparsers):
    """Adds `rnnserve train TASK` for every task of `training.config.TASK_CONFIGS`."""
    train = subparsers.add_parser(
        "train",
        help="train a task; writes a run directory",
        description="Train a task and write its run directory (config, vocabulary, metrics, "
        "model.keras, checkpoints, TensorBoard logs, curves.png).",
    )
    tasks = train.add_subparsers(dest="task", metavar="TASK")
    tasks.required = True
    for name, config_class in TASK_CONFIGS.items():
        parser = tasks.add_parser(
            name,
            help=config_class.help,
            description=config_class.help,
            formatter_class=argparse.RawDescriptionHelpFormatter,
            epilog="Ctrl-C stops after the current batch, saves a checkpoint and prints the --resume command.",
        )
        _add_config_flags(parser, config_class)
        parser.set_defaults(func=run_train, preload_tensorflow=False)  # run_train says so, then loads it


def resume_command(task, run_path):
    """The command line that continues the run in `run_path`."""
    return f"rnnserve train {task} --resume {shlex.quote(str(run_path))}"


def run_train(args):
    """Runs `rnnserve train TASK` for the parsed `args`; returns the exit status."""
    fields = {f.name for f in dataclasses.fields(TASK_CONFIGS[args.task])}
    given = {key: value for key, value in vars(args).items() if key in fields}
    out, resume = getattr(args, "out", None), getattr(args, "resume", None)
    if given.get("verbose") != 0:
        print("Loading TensorFlow...", flush=True)  # seconds before anything else can be said
    import_tensorflow_quietly()
    from rnnserve.training.interrupt import EXIT_STATUS
    from rnnserve.training.tasks import TASKS
    from rnnserve.training.trainer import resume_config, train

    task = TASKS[args.task]
    if resume:
        run, config = resume_config(task, resume, given)
        if out and os.path.abspath(out) != os.path.abspath(resume):
            raise UserError("--resume continues a run in its own directory; drop --out.")
    else:
        run, config = None, task.config_class(**given)
    result = train(task, config, out=out, run=run)
    if result.interrupted:
        print(
            f"Interrupted. {result.stopped_after}\nContinue with:\n  {resume_command(task.name, result.run.path)}",
            file=sys.stderr,
            flush=True,
        )
        return EXIT_STATUS
    return 0
