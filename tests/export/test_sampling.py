"""The in-graph token pickers against the definition of the distribution they
sample: softmax(z / temperature) over the top_k largest logits, [UNK] never.

Each check draws one token for each of many identical rows (every row has
its own stateless draw) and compares the frequencies with the exact
probabilities by Pearson's chi-square test (scipy-free: the statistic
against a fixed critical value far in the tail, so a correct sampler fails
with probability < 1e-6, and the draws are seeded, so the test is
deterministic).
"""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from rnnserve import sampling
from rnnserve.training.vocab import UNK_ID

ROWS = 20_000
# [UNK] has the largest logit: a picker that forgets the mask would pick it most.
LOGITS = np.array([3.0, 1.0, 0.5, -0.3, 2.0, 0.0, 1.5], np.float32)
VOCAB = len(LOGITS)
# Chi-square critical values at p = 1e-6 by degrees of freedom.
CRITICAL = {1: 23.9, 2: 27.6, 3: 30.7, 4: 33.4, 5: 36.0}


def _pick(temperature, top_k, seed=5, position=0):
    temperature, top_k = tf.constant(temperature, tf.float32), tf.constant(top_k, tf.int32)
    pickers = sampling.pickers(temperature, top_k, tf.constant(seed, tf.int64), position + 1, VOCAB)
    pick = pickers[int(sampling.mode(temperature, top_k, VOCAB))]
    logits = tf.constant(np.tile(LOGITS, (ROWS, 1)))  # (ROWS, V)
    return pick(logits, tf.constant(position)).numpy()


def _expected(temperature, top_k):
    z = LOGITS.astype(np.float64).copy()
    z[UNK_ID] = -np.inf
    if 0 < top_k < VOCAB:
        z[z < np.sort(z)[-top_k]] = -np.inf
    p = np.exp((z - z.max()) / temperature)
    return p / p.sum()


@pytest.mark.parametrize(
    "temperature, top_k", [(1.0, 0), (0.6, 0), (2.5, 0), (1.0, VOCAB), (0.8, 3), (1.3, 2)]
)
def test_sampled_frequencies_follow_softmax_over_the_top_k(temperature, top_k):
    tokens = _pick(temperature, top_k)
    expected = _expected(temperature, top_k)
    counts = np.bincount(tokens, minlength=VOCAB)
    assert counts[expected == 0].sum() == 0, f"drew tokens outside the top-{top_k} or [UNK]: {counts}"
    support = expected > 0
    chi2 = (((counts - ROWS * expected)[support]) ** 2 / (ROWS * expected[support])).sum()
    assert chi2 < CRITICAL[int(support.sum()) - 1], (chi2, counts, np.round(ROWS * expected))


def test_temperature_zero_and_top_1_are_the_argmax_without_unk():
    best = int(np.argmax(np.where(np.arange(VOCAB) == UNK_ID, -np.inf, LOGITS)))
    assert set(_pick(0.0, 0)) == {best}
    assert set(_pick(0.0, 3)) == {best}
    assert set(_pick(1.7, 1)) == {best}


def test_a_seed_and_position_fix_the_draws_and_another_changes_them():
    first = _pick(1.0, 0, seed=5, position=0)
    np.testing.assert_array_equal(first, _pick(1.0, 0, seed=5, position=0))
    assert not np.array_equal(first, _pick(1.0, 0, seed=6, position=0))
    assert not np.array_equal(first, _pick(1.0, 0, seed=5, position=1))


def test_mode_picks_the_cheapest_equivalent_picker():
    def mode(temperature, top_k):
        return int(sampling.mode(tf.constant(temperature), tf.constant(top_k), VOCAB))

    assert mode(0.0, 0) == mode(0.0, 4) == sampling.GREEDY
    assert mode(1.0, 0) == mode(1.0, VOCAB) == sampling.SAMPLE
    assert mode(1.0, 1) == mode(0.5, VOCAB - 1) == sampling.SAMPLE_TOP_K
