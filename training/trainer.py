"""The training loop every task shares: run directory, resume, distribution,
`model.fit` with the run's callbacks, the final model and its figures.

    run = train(TASKS["charlm"], args)      # what `rnnserve train charlm` does

A fresh run writes config.json (every argument, so `--resume` needs nothing
else) and vocab.json, then fits; each epoch ends with a row in metrics.json,
a checkpoint and curves.png. `--resume RUN_DIR` reloads the newest checkpoint
(weights and optimizer state) and continues with the next epoch, with the
same data each epoch would have had. At the end the task's stateless model is
saved as model.keras, evaluated, and exported when `--export-base` is given.
"""

from __future__ import annotations

import argparse
import sys

import keras

from rnnserve.errors import UserError
from rnnserve.training.callbacks import EpochRecorder, TimeBudget
from rnnserve.training.distribute import get_strategy, prepare_fit
from rnnserve.training.run_directory import RunDirectory

CONFIG_FORMAT = 1
# Flags a resumed run may change; everything else comes from config.json.
RESUME_OVERRIDES = ("epochs", "time_budget", "export_base", "verbose")
# Flags that are about this invocation, not about the run.
NOT_RECORDED = ("func", "command", "task", "resume", "out")


def _recorded_args(args):
    return {k: v for k, v in sorted(vars(args).items()) if k not in NOT_RECORDED}


def _resumed_args(task, args):
    """The recorded arguments of the run to resume, with the allowed overrides."""
    run = RunDirectory.open(args.resume)
    config = run.config()
    if config.get("task") != task.name:
        raise UserError(f"{run.path} is a {config.get('task')!r} run, not {task.name!r}.")
    recorded = dict(config["args"])
    for key in RESUME_OVERRIDES:
        if getattr(args, key, None) is not None:
            recorded[key] = getattr(args, key)
    return run, argparse.Namespace(**recorded, resume=args.resume, task=task.name)


def _say(args, message):
    if args.verbose != 0:
        print(message, flush=True)


def train(task, args):
    """Runs one task end to end; returns the `RunDirectory`.

    Args:
        task: A `training.tasks.base.Task`.
        args: The parsed `rnnserve train TASK` flags (see `training/cli.py`).
    """
    run = None
    if args.resume:
        run, args = _resumed_args(task, args)
    keras.utils.set_random_seed(args.seed)
    strategy = get_strategy(args.strategy)
    data = task.prepare(args)  # bad data fails here, before anything is written
    checkpoint = run.latest_checkpoint() if run is not None else None
    with strategy.scope():
        if checkpoint:
            initial_epoch, path = checkpoint
            model = run.load_checkpoint(path)
            _say(args, f"Resuming {run.path} after epoch {initial_epoch} ({path.name}).")
        else:
            initial_epoch = 0
            model = task.build_model(args, data)
            task.compile(model, args)
    if run is None:  # a new run: described completely, in one step
        config = {
            "format": CONFIG_FORMAT,
            "task": task.name,
            "args": _recorded_args(args),
            "model": {"builder": task.model_builder, **task.model_kwargs(args, data)},
            "task_options": task.task_options(),
        }
        run = RunDirectory.create(args.out or RunDirectory.default_path(task.name), config, data.vocab)

    metrics = run.metrics()
    metrics["epochs"] = [row for row in metrics["epochs"] if row["epoch"] <= initial_epoch]
    if initial_epoch:
        metrics.setdefault("resumed_after_epoch", []).append(initial_epoch)
    budget = TimeBudget(args.time_budget)
    previous_wall = metrics["epochs"][-1]["wall_time"] if metrics["epochs"] else 0.0
    callbacks = [
        budget,
        *task.callbacks(args, data, run),
        keras.callbacks.TensorBoard(log_dir=str(run.tensorboard)),
        EpochRecorder(run, metrics, data.tokens_per_batch, budget, task.quality_key, previous_wall),
    ]
    if initial_epoch < args.epochs:
        verbose = args.verbose if args.verbose is not None else (1 if sys.stdout.isatty() else 2)
        batches = data.train(initial_epoch, args.epochs)
        prepare_fit(model, strategy, batches)
        model.fit(
            batches,
            epochs=args.epochs,
            initial_epoch=initial_epoch,
            steps_per_epoch=data.steps_per_epoch,
            validation_data=data.validation,
            callbacks=callbacks,
            shuffle=False,  # the task's dataset already orders each epoch
            verbose=verbose,
        )

    final_model = task.final_model(model, args, data)
    run.save_model(final_model)
    figures = task.evaluate(final_model, args, data)
    last = metrics["epochs"][-1] if metrics["epochs"] else {}
    metrics["final"] = {
        **{k: v for k, v in last.items() if k != "partial"},
        **figures,
        "status": "stopped by --time-budget" if budget.exhausted else "finished",
    }
    run.write_metrics(metrics)
    _say(args, f"Run directory: {run.path}")
    _say(args, "Final: " + ", ".join(f"{k}={_fmt(v)}" for k, v in metrics["final"].items()))
    if args.export_base:
        from rnnserve.training.export import export_run
        from rnnserve.training.export.cli import print_progress

        version_dir = export_run(
            run.path, args.export_base, progress=print_progress if args.verbose != 0 else None
        )
        _say(args, f"Exported SavedModel: {version_dir}")
    return run


def _fmt(value):
    return f"{value:.4g}" if isinstance(value, float) else str(value)
