"""`sampling.pick_rows`, the decoder's per-row sampler: row b of a shared batch is
drawn exactly as the contract's picker draws that row alone (a batch of one,
the way the export's `generate` draws a one-row request), whatever the
other rows' modes, seeds and positions."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from rnnserve import sampling

V = 40
RNG = np.random.default_rng(13)
# Mixed rows: greedy, temperature sampling, top-k, top_k = V (no truncation), top_k 1, hot and cold.
TEMPERATURE = np.array([0.0, 0.7, 1.3, 0.9, 0.0, 2.0, 0.3, 1.0], np.float32)
TOP_K = np.array([0, 0, 5, V, 3, 1, 2, 0], np.int32)
SEED = np.array([1, 2, 3, 4, 5, -6, 2**40, 0], np.int64)
POSITION = np.array([0, 1, 7, 2, 3, 4, 99, 0], np.int32)


def alone(logits, b) -> int:
    """Row b through the contract's own picker, on a (1, V) batch."""
    temperature, top_k, seed = tf.constant(TEMPERATURE[b]), tf.constant(TOP_K[b]), tf.constant(SEED[b])
    pick = sampling.pickers(temperature, top_k, seed, int(POSITION[b]) + 1, V)[
        int(sampling.mode(temperature, top_k, V))
    ]
    return int(pick(tf.constant(logits[b : b + 1]), int(POSITION[b]))[0])


def test_each_row_of_a_shared_batch_is_drawn_as_it_is_alone():
    for trial in range(5):
        logits = (RNG.normal(size=(len(TEMPERATURE), V)) * 3).astype(np.float32)  # (B, V)
        picked = tf.function(sampling.pick_rows)(logits, TEMPERATURE, TOP_K, SEED, POSITION).numpy()
        assert picked.tolist() == [alone(logits, b) for b in range(len(TEMPERATURE))], trial


def test_pick_rows_never_picks_unk_even_when_it_is_the_likeliest():
    logits = np.zeros((len(TEMPERATURE), V), np.float32)
    logits[:, 0] = 50.0  # [UNK] dominates every row
    picked = sampling.pick_rows(logits, TEMPERATURE, TOP_K, SEED, POSITION).numpy()
    assert (picked != 0).all()


def test_a_row_does_not_depend_on_its_neighbours():
    logits = (RNG.normal(size=(len(TEMPERATURE), V)) * 3).astype(np.float32)
    full = sampling.pick_rows(logits, TEMPERATURE, TOP_K, SEED, POSITION).numpy()
    reversed_rows = sampling.pick_rows(
        logits[::-1].copy(),
        TEMPERATURE[::-1].copy(),
        TOP_K[::-1].copy(),
        SEED[::-1].copy(),
        POSITION[::-1].copy(),
    ).numpy()
    assert full.tolist() == reversed_rows[::-1].tolist()
