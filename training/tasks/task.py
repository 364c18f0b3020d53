"""What a task is: its data, its model, its loss and its quality figure.

The trainer (`training/trainer.py`) runs every task the same way; a task
only says what differs. Every hook takes the run's `TrainConfig` (the
task's `config_class`, training/config.py). `TaskData` is what
`Task.prepare` returns: a function giving the training batches of a span of
epochs (so a resumed run sees exactly the epochs it would have seen), a
fixed validation set, and sizes for the tokens/s figure.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import keras
import tensorflow as tf

from rnnserve.models import BUILDERS
from rnnserve.training.config import TrainConfig
from rnnserve.training.vocab import Vocabulary


@dataclass
class TaskData:
    """The data of one run.

    Attributes:
        train: `train(first_epoch, last_epoch)` → a dataset holding
            `steps_per_epoch` batches for each epoch in
            `[first_epoch, last_epoch)`.
        steps_per_epoch: Training batches per epoch.
        validation: A finite validation dataset (or None).
        tokens_per_batch: Target tokens (or values) in one batch, for
            `tokens_per_second`.
        vocab: The task's vocabulary, saved as vocab.json (or None).
        extras: Anything the task's `evaluate` needs (e.g. raw arrays).
    """

    train: Callable[[int, int], tf.data.Dataset]
    steps_per_epoch: int
    validation: tf.data.Dataset | None
    tokens_per_batch: int
    vocab: Vocabulary | None = None
    extras: dict[str, Any] = field(default_factory=dict)

    def summary(self):
        """One line for the console: batches per epoch and vocabulary size."""
        text = f"{self.steps_per_epoch:,} training batches per epoch"
        if self.vocab is not None:
            text += f", a vocabulary of {len(self.vocab):,} {self.vocab.level} tokens"
        return text + "."


class Task:
    """A training task; subclasses fill in the hooks.

    `prepare`, `model_kwargs` and `evaluate` are every task's own;
    `build_model` (the `model_builder` of `models.BUILDERS`) and `compile`
    (cross-entropy and accuracy) have defaults a task overrides when it differs.

    Class attributes:
        config_class: The task's `TrainConfig` subclass; its `task` is the
            `rnnserve train` subcommand.
        quality_key: The Keras log key plotted beside the loss.
        model_builder: The `models.builders` structure it uses.
    """

    config_class: type[TrainConfig] = TrainConfig
    quality_key = "val_accuracy"
    model_builder = ""

    @property
    def name(self) -> str:
        """The `rnnserve train` subcommand (and config.json's "task")."""
        return self.config_class.task

    def prepare(self, config) -> TaskData:
        """The run's data; bad input raises `UserError` before anything is written."""
        raise NotImplementedError

    def model_kwargs(self, config, data: TaskData) -> dict:
        """Keyword arguments of the model builder (recorded in config.json)."""
        raise NotImplementedError

    def task_options(self) -> dict:
        """Facts the exporter needs beyond the model (config.json "task_options")."""
        return {}

    def build_model(self, config, data: TaskData) -> keras.Model:
        """`model_builder` called with `model_kwargs`."""
        return BUILDERS[self.model_builder](**self.model_kwargs(config, data))

    def compile(self, model: keras.Model, config) -> None:
        """Cross-entropy of integer targets against logits, and accuracy."""
        model.compile(
            optimizer=optimizer(config),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=["accuracy"],
        )

    def callbacks(self, config, data: TaskData, run) -> list:
        """Extra callbacks (state resets, text samples)."""
        return []

    def final_model(self, model: keras.Model, config, data: TaskData) -> keras.Model:
        """The model saved as model.keras (stateless); by default `model`."""
        return model

    def evaluate(self, model: keras.Model, config, data: TaskData) -> dict:
        """The task's quality figures, printed and stored under "final"."""
        raise NotImplementedError


def optimizer(config):
    """Adam or SGD at `config.lr`, with global gradient-norm clipping at `config.clip_norm`."""
    clip = config.clip_norm if config.clip_norm and config.clip_norm > 0 else None
    if config.optimizer == "sgd":
        return keras.optimizers.SGD(config.lr, global_clipnorm=clip)
    return keras.optimizers.Adam(config.lr, global_clipnorm=clip)


def copy_trainable_weights(target, source):
    """Assigns `source`'s trainable weights to `target`'s (same structure, e.g.
    a stateful model and its stateless twin)."""
    for mine, theirs in zip(target.trainable_weights, source.trainable_weights, strict=True):
        mine.assign(theirs)
