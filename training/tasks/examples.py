"""In-memory examples as a task's data: arrays of inputs and targets, split
into training and validation rows, shuffled per epoch, batched.

The synthetic tasks (classify, seq2seq, regress, condgen) make their
examples with numpy and hand them to `examples_data`; `padded` writes
variable-length id lists as one zero-padded array.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from rnnserve.errors import UserError
from rnnserve.training.partitioning import epoch_rng
from rnnserve.training.tasks.task import TaskData


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


def examples_data(inputs, targets, config, values_per_example, val_fraction=0.15, vocab=None):
    """`TaskData` over in-memory examples; the last `val_fraction` validates.

    Args:
        inputs: An array or a dict of arrays (named model inputs), first axis N.
        targets: `(N, ...)` array.
        config: The run's `TrainConfig` (`batch_size`, `seed`).
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
    if len(train_y) < config.batch_size:
        raise UserError(
            f"the task has {len(train_y)} training examples, fewer than one batch of "
            f"{config.batch_size}; lower --batch-size."
        )
    return TaskData(
        train=array_dataset(train_x, train_y, config.batch_size, config.seed),
        steps_per_epoch=len(train_y) // config.batch_size,
        validation=fixed_batches(val_x, val_y, config.batch_size),
        tokens_per_batch=config.batch_size * values_per_example,
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
    """Right-pads lists of ids to `(N, length)` int32.

    Example:

    >>> padded([[3, 1], [2]], 3)
    array([[3, 1, 0],
           [2, 0, 0]], dtype=int32)
    """
    out = np.full((len(rows), length), pad, dtype=np.int32)
    for i, row in enumerate(rows):
        out[i, : len(row)] = row
    return out
