"""Minibatches of (inputs, targets) windows from one long token stream, by the
two partitioning schemes of Dive into Deep Learning (Zhang et al.), §8.3
"Language Models and the Dataset" of its classic edition (classic.d2l.ai;
§9.3 "Language Models" of the current d2l.ai), whose iterator names they
keep:

Random partitioning (`seq_data_iter_random`): drop a random offset
o ∈ [0, T) from the start, cut the rest into m = ⌊(N − o − 1)/T⌋ windows
starting at o, o+T, …, shuffle them, and batch them B at a time (the last
incomplete batch is dropped). Windows of one batch are unrelated to those of
the next, so the model starts every batch from a zero state.

Sequential partitioning (`seq_data_iter_sequential`): drop a random offset
o ∈ [0, T], keep n = ⌊(N − o − 1)/B⌋·B tokens, lay them out as B rows of
L = n/B consecutive tokens, and cut the rows into ⌊L/T⌋ column blocks of
width T. Row r of batch i+1 continues row r of batch i exactly, so a
stateful model carries its state from batch to batch (gradients are cut
between batches: truncated BPTT) and resets it every epoch.

In both, targets are the inputs shifted by one token. The offset and the
shuffle of epoch e come from `(seed, e)`, so a run is reproducible and a
resumed run sees the epochs it would have seen. The window start indices are
computed here; `tf.data` gathers the windows.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from rnnserve.training.config import BATCHING_SCHEMES as SCHEMES
from rnnserve.training.corpus import CorpusError


def epoch_rng(seed, epoch):
    """The random generator of one epoch: a pure function of (seed, epoch)."""
    return np.random.default_rng([seed, epoch])


def random_partition(num_tokens, seq_len, batch_size, offset, rng=None):
    """Window starts of random partitioning: `(num_batches, B)` int64.

    `rng` shuffles the windows; `None` keeps them in stream order.
    """
    num_windows = (num_tokens - offset - 1) // seq_len
    starts = offset + seq_len * np.arange(num_windows, dtype=np.int64)
    if rng is not None:
        rng.shuffle(starts)
    num_batches = num_windows // batch_size
    return starts[: num_batches * batch_size].reshape(num_batches, batch_size)


def sequential_partition(num_tokens, seq_len, batch_size, offset):
    """Window starts of sequential partitioning: `(num_batches, B)` int64.

    Batch i, row r starts at `offset + r·L + i·T`.
    """
    row_length = (num_tokens - offset - 1) // batch_size  # L
    num_batches = row_length // seq_len
    rows = offset + row_length * np.arange(batch_size, dtype=np.int64)  # (B,)
    columns = seq_len * np.arange(num_batches, dtype=np.int64)  # (num_batches,)
    return columns[:, None] + rows[None, :]


def partition(scheme, num_tokens, seq_len, batch_size, seed, epoch):
    """Window starts of one epoch under `scheme`: `(num_batches, B)`."""
    rng = epoch_rng(seed, epoch)
    if scheme == "random":
        return random_partition(num_tokens, seq_len, batch_size, int(rng.integers(0, seq_len)), rng)
    if scheme == "sequential":
        return sequential_partition(num_tokens, seq_len, batch_size, int(rng.integers(0, seq_len + 1)))
    raise ValueError(f"Received an invalid batching scheme {scheme!r}; expected one of {SCHEMES}.")


def min_tokens(seq_len, batch_size):
    """The fewest tokens that give one full batch whatever the offset."""
    return batch_size * seq_len + seq_len + 1


def check_length(tokens, seq_len, batch_size, what):
    """Raises CorpusError when `tokens` cannot fill one batch."""
    needed = min_tokens(seq_len, batch_size)
    if len(tokens) < needed:
        raise CorpusError(
            f"the {what} has {len(tokens)} tokens, too short for one batch of "
            f"{batch_size}×{seq_len} (needs {needed}); use a longer corpus or lower "
            "--batch-size/--seq-len."
        )


def steps_per_epoch(scheme, num_tokens, seq_len, batch_size):
    """Batches every epoch gets: the count at the largest offset, so that all
    epochs are equally long (an epoch with a smaller offset drops its last
    batch at most)."""
    worst_offset = seq_len - 1 if scheme == "random" else seq_len
    if scheme == "random":
        return (num_tokens - worst_offset - 1) // seq_len // batch_size
    return (num_tokens - worst_offset - 1) // batch_size // seq_len


def _windows(stream, starts, seq_len):
    """Maps a dataset of `(B,)` window starts to `(inputs, targets)` batches."""
    offsets = tf.range(seq_len + 1, dtype=tf.int64)  # (T+1,)

    def gather(batch_starts):  # (B,)
        windows = tf.gather(stream, batch_starts[:, None] + offsets[None, :])  # (B, T+1)
        return windows[:, :-1], windows[:, 1:]

    return starts.map(gather, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).prefetch(
        tf.data.AUTOTUNE
    )


def training_batches(tokens, scheme, seq_len, batch_size, seed):
    """The training windows of a token stream, epoch by epoch.

    Args:
        tokens: `(N,)` int token stream.
        scheme: `"random"` or `"sequential"`.
        seq_len: T. batch_size: B. seed: the run's seed.

    Returns:
        `(train, steps)`: `train(first_epoch, last_epoch)` is a `tf.data`
        dataset of `(inputs (B, T), targets (B, T))` int32 batches, `steps`
        per epoch, epoch e partitioned with `(seed, e)`.

    Example:

    >>> train, steps = training_batches(np.arange(1000), "sequential", 10, 4, seed=0)
    >>> x, y = next(iter(train(0, 1)))
    >>> x.shape, bool((y[:, :-1] == x[:, 1:]).numpy().all())
    (TensorShape([4, 10]), True)
    """
    check_length(tokens, seq_len, batch_size, "training text")
    steps = steps_per_epoch(scheme, len(tokens), seq_len, batch_size)
    stream = tf.constant(np.asarray(tokens, dtype=np.int32))

    def train(first_epoch, last_epoch):
        def starts():
            for epoch in range(first_epoch, last_epoch):
                yield from partition(scheme, len(tokens), seq_len, batch_size, seed, epoch)[:steps]

        spec = tf.TensorSpec((batch_size,), tf.int64)
        return _windows(stream, tf.data.Dataset.from_generator(starts, output_signature=spec), seq_len)

    return train, steps


def validation_batches(tokens, scheme, seq_len, batch_size):
    """The validation windows: the scheme's layout at offset 0, unshuffled."""
    check_length(tokens, seq_len, batch_size, "validation text")
    if scheme == "random":
        starts = random_partition(len(tokens), seq_len, batch_size, 0)
    else:
        starts = sequential_partition(len(tokens), seq_len, batch_size, 0)
    stream = tf.constant(np.asarray(tokens, dtype=np.int32))
    return _windows(stream, tf.data.Dataset.from_tensor_slices(starts), seq_len)


def split_stream(tokens, val_fraction):
    """`(train, validation)`: the last `val_fraction` of the stream is validation."""
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(
            f"Received an invalid value for `val_fraction`: expected (0, 1), got {val_fraction!r}."
        )
    cut = int(round(len(tokens) * (1.0 - val_fraction)))
    return tokens[:cut], tokens[cut:]
