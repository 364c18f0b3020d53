"""The two partitioning schemes produce exactly the windows of Dive into Deep
Learning, classic edition §8.3 (`seq_data_iter_random`, `seq_data_iter_sequential`, written
out below as the oracle), and sequential batches with a stateful model equal
one pass over the whole stream."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from rnnserve.models import build_language_model
from rnnserve.training.corpus import CorpusError
from rnnserve.training.partitioning import (
    partition,
    random_partition,
    sequential_partition,
    split_stream,
    steps_per_epoch,
    training_batches,
    validation_batches,
)


def d2l_random(corpus, batch_size, num_steps, offset, permutation):
    """seq_data_iter_random with its two random draws given."""
    corpus = corpus[offset:]
    num_subseqs = (len(corpus) - 1) // num_steps
    initial_indices = list(range(0, num_subseqs * num_steps, num_steps))
    initial_indices = [initial_indices[i] for i in permutation]
    num_batches = num_subseqs // batch_size
    for i in range(0, batch_size * num_batches, batch_size):
        indices = initial_indices[i : i + batch_size]
        yield (
            np.array([corpus[j : j + num_steps] for j in indices]),
            np.array([corpus[j + 1 : j + 1 + num_steps] for j in indices]),
        )


def d2l_sequential(corpus, batch_size, num_steps, offset):
    """seq_data_iter_sequential with its random offset given."""
    num_tokens = ((len(corpus) - offset - 1) // batch_size) * batch_size
    xs = np.array(corpus[offset : offset + num_tokens]).reshape(batch_size, -1)
    ys = np.array(corpus[offset + 1 : offset + 1 + num_tokens]).reshape(batch_size, -1)
    num_batches = xs.shape[1] // num_steps
    for i in range(0, num_steps * num_batches, num_steps):
        yield xs[:, i : i + num_steps], ys[:, i : i + num_steps]


def windows(corpus, starts, num_steps):
    for batch in starts:
        yield (
            np.array([corpus[s : s + num_steps] for s in batch]),
            np.array([corpus[s + 1 : s + 1 + num_steps] for s in batch]),
        )


CORPUS = (np.arange(353) * 7 % 97).tolist()  # any stream whose windows are distinguishable


@pytest.mark.parametrize("offset", [0, 1, 4])
def test_random_partition_is_d2l_random_sampling(offset):
    ours = random_partition(len(CORPUS), 5, 4, offset, np.random.default_rng(9))
    num_subseqs = (len(CORPUS) - offset - 1) // 5
    expected = list(d2l_random(CORPUS, 4, 5, offset, np.random.default_rng(9).permutation(num_subseqs)))
    got = list(windows(CORPUS, ours, 5))
    assert len(got) == len(expected) > 0
    for (x, y), (ex, ey) in zip(got, expected):
        np.testing.assert_array_equal(x, ex)
        np.testing.assert_array_equal(y, ey)


@pytest.mark.parametrize("offset", [0, 3, 5])
def test_sequential_partition_is_d2l_sequential_partitioning(offset):
    ours = sequential_partition(len(CORPUS), 5, 4, offset)
    expected = list(d2l_sequential(CORPUS, 4, 5, offset))
    got = list(windows(CORPUS, ours, 5))
    assert len(got) == len(expected) > 0
    for (x, y), (ex, ey) in zip(got, expected):
        np.testing.assert_array_equal(x, ex)
        np.testing.assert_array_equal(y, ey)


@pytest.mark.parametrize("scheme", ["random", "sequential"])
def test_tf_data_pipeline_yields_the_schemes_windows_each_epoch(scheme):
    stream = np.arange(1000)  # token value = its position
    train, steps = training_batches(stream, scheme, 8, 4, seed=3)
    assert steps == steps_per_epoch(scheme, 1000, 8, 4)
    batches = [(x.numpy(), y.numpy()) for x, y in train(0, 3)]
    assert len(batches) == 3 * steps
    for epoch in range(3):
        starts = partition(scheme, 1000, 8, 4, seed=3, epoch=epoch)[:steps]
        for (x, y), batch_starts in zip(batches[epoch * steps : (epoch + 1) * steps], starts):
            np.testing.assert_array_equal(x[:, 0], batch_starts)
            np.testing.assert_array_equal(x, batch_starts[:, None] + np.arange(8))
            np.testing.assert_array_equal(y, x + 1)
    if scheme == "sequential":  # row r of batch i+1 continues row r of batch i
        for (x, _), (x_next, _) in zip(batches[: steps - 1], batches[1:steps]):
            np.testing.assert_array_equal(x_next[:, 0], x[:, -1] + 1)
    else:  # every window at most once per epoch
        first_epoch = np.concatenate([x[:, 0] for x, _ in batches[:steps]])
        assert len(set(first_epoch)) == len(first_epoch)


def test_same_seed_same_batches_and_epochs_differ():
    train_a, _ = training_batches(np.arange(1000), "random", 8, 4, seed=1)
    train_b, _ = training_batches(np.arange(1000), "random", 8, 4, seed=1)
    a = [x.numpy() for x, _ in train_a(0, 2)]
    b = [x.numpy() for x, _ in train_b(0, 2)]
    np.testing.assert_array_equal(np.stack(a), np.stack(b))
    half = len(a) // 2
    assert not np.array_equal(np.stack(a[:half]), np.stack(a[half:]))
    resumed = [x.numpy() for x, _ in train_a(1, 2)]  # a resumed run sees epoch 1 unchanged
    np.testing.assert_array_equal(np.stack(resumed), np.stack(a[half:]))


def test_validation_is_the_last_fraction_of_the_stream():
    train, val = split_stream(np.arange(100), 0.1)
    np.testing.assert_array_equal(val, np.arange(90, 100))
    assert len(train) == 90


def test_a_stream_too_short_for_one_batch_is_a_corpus_error():
    with pytest.raises(CorpusError, match=r"has 50 tokens, too short for one batch of 4×16 \(needs 81\)"):
        training_batches(np.arange(50), "random", 16, 4, seed=0)


def test_sequential_stateful_batches_equal_one_pass_over_the_whole_stream(rng):
    """Loss of the stateful model over consecutive batches == loss of each
    row's whole stream at once (no state reset, no gradient involved)."""
    batch, steps_len, vocab = 3, 6, 13
    stream = rng.integers(0, vocab, size=200).astype(np.int32)
    starts = sequential_partition(len(stream), steps_len, batch, offset=2)
    stateful = build_language_model(
        vocab, cell="lstm", units=8, num_layers=2, stateful=True, batch_size=batch
    )
    stateless = build_language_model(vocab, cell="lstm", units=8, num_layers=2)
    for mine, theirs in zip(stateless.trainable_weights, stateful.trainable_weights, strict=True):
        mine.assign(theirs)
    ce = keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction=None)
    per_batch = []
    for x, y in windows(stream, starts, steps_len):
        per_batch.append(ce(y, stateful(x)).numpy())  # (B, T)
    rows_x = np.concatenate([x for x, _ in windows(stream, starts, steps_len)], axis=1)
    rows_y = np.concatenate([y for _, y in windows(stream, starts, steps_len)], axis=1)
    whole = ce(rows_y, stateless(rows_x)).numpy()  # (B, num_batches·T)
    np.testing.assert_array_equal(per_batch[0], whole[:, :steps_len])
    np.testing.assert_allclose(np.concatenate(per_batch, axis=1), whole, atol=1e-5)


def test_gradient_is_cut_between_sequential_batches(rng):
    """Truncated BPTT: batch 2's gradient equals a stateless model's gradient
    from batch 1's final state taken as a constant."""
    vocab = 11
    x1, x2, y2 = (rng.integers(0, vocab, size=(2, 5)).astype(np.int32) for _ in range(3))
    stateful = build_language_model(vocab, cell="gru", units=6, stateful=True, batch_size=2)
    stateless = build_language_model(vocab, cell="gru", units=6)
    for mine, theirs in zip(stateless.trainable_weights, stateful.trainable_weights, strict=True):
        mine.assign(theirs)
    ce = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    stateful(x1)
    with tf.GradientTape() as tape:
        loss = ce(y2, stateful(x2))
    ours = tape.gradient(loss, stateful.trainable_weights)

    from rnnserve.models.runner import run_language_model

    _, state = run_language_model(stateless, x1)
    with tf.GradientTape() as tape:
        logits, _ = run_language_model(stateless, x2, tf.constant(state))
        loss = ce(y2, logits)
    expected = tape.gradient(loss, stateless.trainable_weights)
    for a, b in zip(ours, expected, strict=True):
        np.testing.assert_allclose(tf.convert_to_tensor(a), tf.convert_to_tensor(b), atol=1e-6)


def test_validation_batches_cover_the_validation_stream_in_order():
    val = validation_batches(np.arange(300), "random", 10, 4)
    firsts = np.concatenate([x.numpy()[:, 0] for x, _ in val])
    np.testing.assert_array_equal(firsts, np.arange(0, len(firsts) * 10, 10))
