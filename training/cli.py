"""`rnnserve train TASK`: the command line of training/ (see trainer.py).

rnnserve train charlm --epochs 5 --cell gru --units 128
rnnserve train charlm --corpus my-text.txt --time-budget 60
rnnserve train charlm --resume runs/charlm-20261125-101500
rnnserve train hello
"""

from __future__ import annotations

from rnnserve.models import CELLS
from rnnserve.training.arguments import non_negative_float, positive_float, positive_int

# Overridable on --resume; `None` means "not given" (see trainer.RESUME_OVERRIDES).
_COMMON_DEFAULTS = {"epochs": 10, "verbose": None}


def _add_common_arguments(parser, task):
    model = parser.add_argument_group("model")
    model.add_argument(
        "--cell", choices=sorted(CELLS), help=f"recurrent cell (default: {task.defaults.get('cell', 'lstm')})"
    )
    model.add_argument("--units", type=positive_int, help="H, state size per layer")
    model.add_argument("--layers", type=positive_int, help="L, stacked recurrent layers")
    fit = parser.add_argument_group("training")
    fit.add_argument("--epochs", type=positive_int, default=None, help="number of epochs")
    fit.add_argument("--batch-size", type=positive_int, help="B")
    fit.add_argument("--lr", type=positive_float, help="learning rate")
    fit.add_argument("--optimizer", choices=("adam", "sgd"), default="adam", help="(default: adam)")
    fit.add_argument(
        "--clip-norm",
        type=non_negative_float,
        default=1.0,
        help="global gradient-norm clip, 0 = off (default: 1.0)",
    )
    fit.add_argument(
        "--seed", type=int, default=0, help="seeds data order, initialization and sampling (default: 0)"
    )
    fit.add_argument(
        "--time-budget",
        type=positive_float,
        default=None,
        metavar="SECONDS",
        help="stop cleanly after this much training",
    )
    fit.add_argument(
        "--strategy",
        choices=("default", "mirrored", "multiworker"),
        default="default",
        help="tf.distribute strategy; multiworker reads TF_CONFIG",
    )
    run = parser.add_argument_group("run directory")
    run.add_argument("--out", default=None, help="run directory (default: runs/TASK-TIMESTAMP)")
    run.add_argument(
        "--resume", default=None, metavar="RUN_DIR", help="continue a run from its last checkpoint"
    )
    run.add_argument(
        "--export-base", default=None, metavar="BASE", help="export a SavedModel version into BASE at the end"
    )
    run.add_argument(
        "--verbose",
        type=int,
        choices=(0, 1, 2),
        default=None,
        help="0 silent, 1 progress bars, 2 one line per epoch",
    )
    parser.set_defaults(**{k: v for k, v in task.defaults.items() if k not in _COMMON_DEFAULTS})


def register(subparsers):
    """Adds `rnnserve train TASK` for every task of `training.tasks.TASKS`."""
    from rnnserve.training.tasks import TASKS

    train = subparsers.add_parser("train", help="train a task; writes a run directory")
    tasks = train.add_subparsers(dest="task", metavar="TASK")
    tasks.required = True
    for task in TASKS.values():
        parser = tasks.add_parser(task.name, help=task.help, description=task.help)
        _add_common_arguments(parser, task)
        task.add_arguments(parser)
        parser.set_defaults(func=run_train)


def run_train(args):
    from rnnserve.training.tasks import TASKS
    from rnnserve.training.trainer import train

    task = TASKS[args.task]
    if not args.resume and args.epochs is None:
        args.epochs = task.defaults.get("epochs", _COMMON_DEFAULTS["epochs"])
    train(task, args)
