"""Keras callbacks of a training run: the time budget, state resets for
sequential batching, and the per-epoch record (metrics.json, checkpoint,
curves.png). Ctrl-C has its own (training/interrupt.py).
"""

from __future__ import annotations

import time

import keras

from rnnserve.models.state import recurrent_layers
from rnnserve.training.plots import plot_curves


class TimeBudget(keras.callbacks.Callback):
    """Stops training cleanly once `seconds` of training have passed.

    The current batch finishes, the epoch is closed (validated, recorded and
    checkpointed) and `fit` returns; `exhausted` tells the caller why.

    Args:
        seconds: The budget; `None` for none.
    """

    def __init__(self, seconds):
        super().__init__()
        self.seconds = seconds
        self.exhausted = False
        self._start = None

    def on_train_begin(self, logs=None):
        self._start = time.monotonic()

    def on_train_batch_end(self, batch, logs=None):
        if self.seconds is not None and time.monotonic() - self._start >= self.seconds:
            self.exhausted = True
            self.model.stop_training = True


class ResetStates(keras.callbacks.Callback):
    """Zeroes every stateful `Recurrent` at each epoch and before validation
    (sequential partitioning: state flows between the batches of one pass)."""

    def _reset(self):
        for layer in recurrent_layers(self.model):
            layer.reset_state()

    def on_epoch_begin(self, epoch, logs=None):
        self._reset()

    def on_test_begin(self, logs=None):
        self._reset()


class EpochRecorder(keras.callbacks.Callback):
    """After every epoch: a row in metrics.json, a checkpoint, curves.png.

    Rows hold the Keras logs (loss, val_loss, metrics), `tokens_per_second`
    of the training part of the epoch, `wall_time` since the run began, and
    `partial` with `batches` when training stopped before the epoch's last
    batch (the time budget, or Ctrl-C).

    Args:
        run: The `RunDirectory`.
        metrics: metrics.json content so far (rows of earlier epochs).
        tokens_per_batch: Target tokens in one batch (B·T, or B·M).
        steps_per_epoch: Training batches in a whole epoch.
        quality_key: The figure plotted beside the loss.
        wall_time_offset: Seconds the run had already spent before a resume.
    """

    def __init__(self, run, metrics, tokens_per_batch, steps_per_epoch, quality_key, wall_time_offset=0.0):
        super().__init__()
        self.run, self.metrics = run, metrics
        self.tokens_per_batch, self.steps_per_epoch, self.quality_key = (
            tokens_per_batch,
            steps_per_epoch,
            quality_key,
        )
        self._run_start = time.monotonic() - wall_time_offset

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_start, self._batches, self._train_seconds = time.monotonic(), 0, None

    def on_train_batch_end(self, batch, logs=None):
        self._batches += 1

    def on_test_begin(self, logs=None):
        if self._train_seconds is None:  # validation ends the training part
            self._train_seconds = time.monotonic() - self._epoch_start

    def on_epoch_end(self, epoch, logs=None):
        seconds = self._train_seconds or (time.monotonic() - self._epoch_start)
        row = {key: float(value) for key, value in (logs or {}).items()}
        row.update(
            epoch=epoch + 1,
            tokens_per_second=self._batches * self.tokens_per_batch / max(seconds, 1e-9),
            wall_time=time.monotonic() - self._run_start,
            partial=self._batches < self.steps_per_epoch,
        )
        if row["partial"]:
            row["batches"] = self._batches
        self.metrics["epochs"].append(row)
        self.run.write_metrics(self.metrics)
        self.run.save_checkpoint(self.model, epoch + 1)
        plot_curves(self.metrics, self.run.curves_path, self.quality_key)
