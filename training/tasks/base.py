"""What a task is: its data, its model, its loss and its quality figure.

The trainer (`training/trainer.py`) runs every task the same way; a task
only says what differs. `TaskData` is what `Task.prepare` returns: a
function giving the training batches of a span of epochs (so a resumed run
sees exactly the epochs it would have seen), a fixed validation set, and
sizes for the tokens/s figure.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from rnnserve.errors import UserError
from rnnserve.models import BUILDERS
from rnnserve.training.partitioning import epoch_rng
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


class Task:
    """A training task; subclasses fill in the hooks.

    `prepare`, `model_kwargs` and `evaluate` are every task's own;
    `build_model` (the `model_builder` of `models.BUILDERS`) and `compile`
    (cross-entropy and accuracy) have defaults a task overrides when it differs.

    Class attributes:
        name: The `rnnserve train` subcommand.
        help: One line for `--help`.
        defaults: Task-specific defaults of the common flags.
        quality_key: The Keras log key plotted beside the loss.
        model_builder: The `models.builders` structure it uses.
    """

    name = ""
    help = ""
    defaults: dict[str, Any] = {}
    quality_key = "val_accuracy"
    model_builder = ""

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        """Adds the task's own flags."""

    def prepare(self, args) -> TaskData:
        raise NotImplementedError

    def model_kwargs(self, args, data: TaskData) -> dict:
        """Keyword arguments of the model builder (recorded in config.json)."""
        raise NotImplementedError

    def task_options(self) -> dict:
        """Facts the exporter needs beyond the model (config.json "task_options")."""
        return {}

    def build_model(self, args, data: TaskData) -> keras.Model:
        """`model_builder` called with `model_kwargs`."""
        return BUILDERS[self.model_builder](**self.model_kwargs(args, data))

    def compile(self, model: keras.Model, args) -> None:
        """Cross-entropy of integer targets against logits, and accuracy."""
        model.compile(
            optimizer=optimizer(args),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=["accuracy"],
        )

    def callbacks(self, args, data: TaskData, run) -> list:
        """Extra callbacks (state resets, text samples)."""
        return []

    def final_model(self, model: keras.Model, args, data: TaskData) -> keras.Model:
        """The model saved as model.keras (stateless); by default `model`."""
        return model

    def evaluate(self, model: keras.Model, args, data: TaskData) -> dict:
        """The task's quality figures, printed and stored under "final"."""
        raise NotImplementedError


def copy_trainable_weights(target, source):
    """Assigns `source`'s trainable weights to `target`'s (same structure, e.g.
    a stateful model and its stateless twin)."""
    for mine, theirs in zip(target.trainable_weights, source.trainable_weights, strict=True):
        mine.assign(theirs)


def optimizer(args):
    """Adam or SGD at `--lr`, with global gradient-norm clipping at `--clip-norm`."""
    clip = args.clip_norm if args.clip_norm and args.clip_norm > 0 else None
    if args.optimizer == "sgd":
        return keras.optimizers.SGD(args.lr, global_clipnorm=clip)
    return keras.optimizers.Adam(args.lr, global_clipnorm=clip)


def array_dataset(inputs, targets, batch_size, seed):
    """`train(first, last)` over in-memory arrays, shuffled per epoch.

    Epoch e visits the rows in the order of `epoch_rng(seed, e)` (the
    generator the token batching uses too), B at a time; the last
    incomplete batch is dropped.

    Args:
        inputs: An array or a dict of arrays (named model inputs), first axis N.
        targets: `(N, ...)` array.
        batch_size: B.
        seed: The run's seed.
    """
    arrays = tf.nest.map_structure(tf.constant, (inputs, targets))
    count = len(targets)
    steps = count // batch_size

    def train(first_epoch, last_epoch):
        def batches():
            for epoch in range(first_epoch, last_epoch):
                order = epoch_rng(seed, epoch).permutation(count)
                yield from order[: steps * batch_size].reshape(steps, batch_size)

        indices = tf.data.Dataset.from_generator(
            batches, output_signature=tf.TensorSpec((batch_size,), tf.int64)
        )
        gather = lambda rows: tf.nest.map_structure(lambda a: tf.gather(a, rows), arrays)  # noqa: E731
        return indices.map(gather, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).prefetch(
            tf.data.AUTOTUNE
        )

    return train


def examples_data(inputs, targets, args, values_per_example, val_fraction=0.15, vocab=None):
    """`TaskData` over in-memory examples; the last `val_fraction` validates.

    Args:
        inputs: An array or a dict of arrays (named model inputs), first axis N.
        targets: `(N, ...)` array.
        args: The run's flags (`batch_size`, `seed`).
        values_per_example: Target tokens or values per example (tokens/s).
        val_fraction: Held-out share. Default: 0.15.
        vocab: The task's vocabulary, if any.

    Returns:
        `TaskData` whose `extras` hold `train_y`, `val_x` and `val_y`.
    """
    (train_x, val_x), (train_y, val_y) = (
        split_arrays(inputs, val_fraction),
        split_arrays(targets, val_fraction),
    )
    if len(train_y) < args.batch_size:
        raise UserError(
            f"the task has {len(train_y)} training examples, fewer than one batch of "
            f"{args.batch_size}; lower --batch-size."
        )
    return TaskData(
        train=array_dataset(train_x, train_y, args.batch_size, args.seed),
        steps_per_epoch=len(train_y) // args.batch_size,
        validation=fixed_batches(val_x, val_y, args.batch_size),
        tokens_per_batch=args.batch_size * values_per_example,
        vocab=vocab,
        extras={"train_y": train_y, "val_x": val_x, "val_y": val_y},
    )


def fixed_batches(inputs, targets, batch_size):
    """A validation dataset: the arrays in order, B at a time (last batch kept)."""
    return tf.data.Dataset.from_tensor_slices((inputs, targets)).batch(batch_size)


def split_arrays(arrays, val_fraction):
    """Splits every array of a dict (or an array) at the same row."""
    some = next(iter(arrays.values())) if isinstance(arrays, dict) else arrays
    cut = int(round(len(some) * (1.0 - val_fraction)))
    if isinstance(arrays, dict):
        return {k: v[:cut] for k, v in arrays.items()}, {k: v[cut:] for k, v in arrays.items()}
    return arrays[:cut], arrays[cut:]


def padded(rows, length, pad=0):
    """Right-pads lists of ids to `(N, length)` int32."""
    out = np.full((len(rows), length), pad, dtype=np.int32)
    for i, row in enumerate(rows):
        out[i, : len(row)] = row
    return out


def greedy_decoding_export(model, input_name, input_spec, start_id, length, end_id=None):
    """The `serving_default` of an N→M or 1→N run: greedy tokens out.

    Args:
        model: From `build_seq2seq` or `build_conditioned_generator`.
        input_name: `"source"` or `"condition"`; input_spec its `tf.TensorSpec`.
        start_id: The decoder's start token. length: tokens generated.
        end_id: If given, positions after the first end token are set to 0.

    Returns:
        A `TaskExport` whose `serving_default` maps `input_name` → `tokens`
        (B, length) int32.
    """
    from rnnserve.models import greedy_decode
    from rnnserve.training.export import Endpoint, TaskExport

    def serve(**inputs):
        tokens = tf.cast(greedy_decode(model, inputs[input_name], start_id, length), tf.int32)  # (B, N)
        if end_id is not None:
            ended = tf.cumsum(tf.cast(tokens == end_id, tf.int32), axis=1, exclusive=True) > 0
            tokens = tf.where(ended, tf.zeros_like(tokens), tokens)
        return {"tokens": tokens}

    metadata = {"start_id": start_id, "output_length": length, "end_id": end_id}
    return TaskExport([Endpoint("serving_default", serve, {input_name: input_spec})], metadata=metadata)
