"""The training loop every task shares: run directory, resume, distribution,
`model.fit` with the run's callbacks, the final model and its figures.

    result = train(TASKS["charlm"], CharLMConfig(epochs=5))   # what `rnnserve train charlm --epochs 5` does

A fresh run writes config.json (its `TrainConfig`, so `--resume` needs
nothing else) and vocab.json, then fits; each epoch ends with a row in
metrics.json, a checkpoint and curves.png. `resume_config` reopens a run:
the newest checkpoint (weights and optimizer state) continues with the next
epoch, with the same data each epoch would have had. At the end the task's
stateless model is saved as model.keras, evaluated, and exported when
`export_base` is set. Ctrl-C stops after the current batch with the epoch
checkpointed (training/interrupt.py); the result says so.
"""

from __future__ import annotations

import gc
import sys
from dataclasses import dataclass

import keras

from rnnserve.errors import UserError
from rnnserve.training.callbacks import EpochRecorder, TimeBudget
from rnnserve.training.config import from_run_config, to_run_config, with_resume_overrides
from rnnserve.training.distribute import get_strategy, prepare_fit
from rnnserve.training.interrupt import InterruptRequest, StopOnInterrupt
from rnnserve.training.run_directory import RunDirectory


@dataclass
class TrainResult:
    """What `train` did.

    Attributes:
        run: The `RunDirectory`.
        interrupted: Ctrl-C stopped the run before it finished; it can be
            resumed.
        stopped_after: For an interrupted run, what was saved: one sentence.
    """

    run: RunDirectory
    interrupted: bool = False
    stopped_after: str = ""


def resume_config(task, run_dir, overrides):
    """Reopens a run for `--resume`: `(RunDirectory, its TrainConfig)`.

    Args:
        task: The `Task` named on the command line.
        run_dir: The run directory.
        overrides: Fields given on the command line; only `on_resume` ones
            may be (`training.config.with_resume_overrides`).
    """
    run = RunDirectory.open(run_dir)
    content = run.config()
    if content.get("task") != task.name:
        raise UserError(f"{run.path} is a {content.get('task')!r} run, not {task.name!r}.")
    return run, with_resume_overrides(from_run_config(content, run.path), overrides)


def _say(config, message):
    if config.verbose != 0:
        print(message, flush=True)


def _start_or_continue(task, config, data, strategy, run):
    """`(model, epochs already done)`: the newest checkpoint of `run`, or a new model."""
    checkpoint = run.latest_checkpoint() if run is not None else None
    with strategy.scope():
        if checkpoint:
            _say(config, f"Resuming {run.path} after epoch {checkpoint[0]} ({checkpoint[1].name}).")
            return run.load_checkpoint(checkpoint[1]), checkpoint[0]
        _say(config, f"Building the model ({config.cell}, {config.layers} × {config.units} units)...")
        model = task.build_model(config, data)
        task.compile(model, config)
    return model, 0


def _fit(task, config, data, strategy, model, run, initial_epoch, interrupt):
    """`model.fit` from `initial_epoch` to `config.epochs`; returns (metrics, budget)."""
    metrics = run.metrics()
    metrics["epochs"] = [row for row in metrics["epochs"] if row["epoch"] <= initial_epoch]
    if initial_epoch:
        metrics.setdefault("resumed_after_epoch", []).append(initial_epoch)
    budget = TimeBudget(config.time_budget)
    previous_wall = metrics["epochs"][-1]["wall_time"] if metrics["epochs"] else 0.0
    callbacks = [
        budget,
        *task.callbacks(config, data, run),
        keras.callbacks.TensorBoard(log_dir=str(run.tensorboard)),
        EpochRecorder(
            run, metrics, data.tokens_per_batch, data.steps_per_epoch, task.quality_key, previous_wall
        ),
        StopOnInterrupt(interrupt),  # last: a Ctrl-C during the others' epoch end stops before the next epoch
    ]
    if initial_epoch < config.epochs and not interrupt.requested:
        # Progress bars on a terminal; one line per epoch in a log file.
        verbose = config.verbose if config.verbose is not None else (1 if sys.stdout.isatty() else 2)
        span = (
            f"epochs {initial_epoch + 1} to {config.epochs}"
            if config.epochs - initial_epoch > 1
            else f"epoch {config.epochs}"
        )
        _say(config, f"Training {span} (Ctrl-C stops and saves).")
        batches = data.train(initial_epoch, config.epochs)
        prepare_fit(model, strategy, batches)
        model.fit(
            batches,
            epochs=config.epochs,
            initial_epoch=initial_epoch,
            steps_per_epoch=data.steps_per_epoch,
            validation_data=data.validation,
            callbacks=callbacks,
            shuffle=False,  # the task's dataset already orders each epoch
            verbose=verbose,
        )
        # The epoch's tf.data iterator (and the threads feeding it) goes now,
        # not at interpreter exit.
        del batches
        gc.collect()
    return metrics, budget


def _what_was_saved(run, metrics, steps_per_epoch):
    last = metrics["epochs"][-1] if metrics["epochs"] else None
    checkpoint = run.latest_checkpoint()
    if last is None or checkpoint is None:
        return "No epoch was saved yet."
    if last.get("partial"):
        done = f"Epoch {last['epoch']} stopped after {last['batches']} of {steps_per_epoch} batches"
    else:
        done = f"Epoch {last['epoch']} is complete"
    return f"{done}; it is saved in {checkpoint[1]}."


def train(task, config, out=None, run=None):
    """Runs one task end to end.

    Args:
        task: A `training.tasks.Task`.
        config: Its `TrainConfig` (`task.config_class`).
        out: The directory of a new run; default `runs/TASK-TIMESTAMP`.
        run: A `RunDirectory` to continue (from `resume_config`) instead.

    Returns:
        A `TrainResult`.
    """
    if run is None:
        out = out or RunDirectory.default_path(task.name)
        RunDirectory.check_new(out)  # before the data and the model take their seconds
    keras.utils.set_random_seed(config.seed)
    strategy = get_strategy(config.strategy)
    _say(config, f"Preparing the data of {task.name}...")
    data = task.prepare(config)  # bad data fails here, before anything is written
    _say(config, data.summary())
    model, initial_epoch = _start_or_continue(task, config, data, strategy, run)
    _say(config, f"Model: {model.count_params():,} parameters.")
    if run is None:  # a new run: described completely, in one step
        model_config = {"builder": task.model_builder, **task.model_kwargs(config, data)}
        run = RunDirectory.create(out, to_run_config(config, model_config, task.task_options()), data.vocab)
        _say(config, f"Run directory: {run.path}")

    with InterruptRequest() as interrupt:
        metrics, budget = _fit(task, config, data, strategy, model, run, initial_epoch, interrupt)
        if interrupt.requested:
            saved = _what_was_saved(run, metrics, data.steps_per_epoch)
            return TrainResult(run, interrupted=True, stopped_after=saved)
        _finish(task, config, data, model, run, metrics, budget)
        if config.export_base and interrupt.requested:
            skipped = f"Training is complete and model.keras is saved; the export into {config.export_base} was skipped."
            return TrainResult(run, interrupted=True, stopped_after=skipped)
        if config.export_base:
            _export(config, run)
    return TrainResult(run)


def _finish(task, config, data, model, run, metrics, budget):
    """Saves the stateless model.keras and the final figures of metrics.json."""
    final_model = task.final_model(model, config, data)
    run.save_model(final_model)
    figures = task.evaluate(final_model, config, data)
    last = metrics["epochs"][-1] if metrics["epochs"] else {}
    metrics["final"] = {
        **{k: v for k, v in last.items() if k not in ("partial", "batches")},
        **figures,
        "status": "stopped by --time-budget" if budget.exhausted else "finished",
    }
    run.write_metrics(metrics)
    _say(config, f"Run directory: {run.path}")
    _say(config, "Final: " + ", ".join(f"{k}={_fmt(v)}" for k, v in metrics["final"].items()))


def _export(config, run):
    from rnnserve.training.export import export_run
    from rnnserve.training.export.cli import print_progress

    _say(config, f"Exporting a SavedModel into {config.export_base}...")
    bar = config.verbose != 0 and sys.stderr.isatty()  # a log file gets the lines before and after
    version_dir = export_run(run.path, config.export_base, progress=print_progress if bar else None)
    _say(config, f"Exported SavedModel: {version_dir}")


def _fmt(value):
    return f"{value:.4g}" if isinstance(value, float) else str(value)
