"""Choosing the next token from logits, in-graph: greedy, temperature, top-k, seeded.

This is the SavedModel contract's sampling rule (docs/savedmodel.md): the
export's `generate` signatures and the server's streaming decoder both pick
tokens with it, so a stream draws exactly what `generate` draws.

For one position, with logits z (B, V):

    z[:, masked] = -inf                        [UNK] (and padding) is never generated
    temperature == 0:  next = argmax z          greedy
    0 < top_k < V:     keep the top_k largest z, next ~ softmax(z_kept / temperature)
    otherwise:         next ~ softmax(z / temperature)

Sampling is stateless (`tf.random.stateless_categorical`): the draw for new
token number `position` uses the seed pair `(seed, position)`, so the same
seed always gives the same tokens, in any process, with no RNG state in the
SavedModel.

A request's temperature and top_k do not change while it generates, so
which of the three pickers applies is decided once per request (`mode`),
outside the token loop, and everything that does not depend on the position
(the `[UNK]` mask, 1 / temperature, the seed pairs) is computed once too,
so the picker is 2–7 ops per token instead of a dozen: at B = 1 a token's
time is mostly the per-op overhead of the graph (BENCHMARKS.md,
"Generation"), so every op taken out of the token loop counts.

Example:

>>> temperature, top_k, seed = tf.constant(0.8), tf.constant(40), tf.constant(7, tf.int64)
>>> pick = pickers(temperature, top_k, seed, count=16, vocab_size=65)[mode(temperature, top_k, 65)]
>>> logits = tf.zeros((2, 65))  # (B, V)
>>> pick(logits, 0)  # the first new token of each row
<tf.Tensor: shape=(2,), dtype=int32, ...>
"""

from __future__ import annotations

import tensorflow as tf

from rnnserve import contract

GREEDY, SAMPLE, SAMPLE_TOP_K = 0, 1, 2


def mode(temperature, top_k, vocab_size):
    """`()` int32: `GREEDY`, `SAMPLE` or `SAMPLE_TOP_K` for a request's scalars
    (`top_k` 0 or V truncates nothing, so it samples from all V)."""
    truncates = (top_k > 0) & (top_k < vocab_size)
    return tf.where(temperature > 0.0, tf.where(truncates, SAMPLE_TOP_K, SAMPLE), GREEDY)


def pickers(temperature, top_k, seed, count, vocab_size, masked_ids=(contract.UNK_TOKEN_ID,)):
    """The three pickers of one request, indexed by `mode`.

    Args:
        temperature: `()` float32 ≥ 0.
        top_k: `()` int32 in [0, V].
        seed: `()` int64, the request's seed.
        count: `()` int, how many positions will be picked (max_new_tokens).
        vocab_size: V.
        masked_ids: token ids never picked (the vocabulary's `[UNK]`, and its
            padding token when it has one).

    Returns:
        `[greedy, sample, sample_top_k]`, each `(logits (B, V) float32,
        position () int) -> (B,) int32` token ids, never one of `masked_ids`.
    """
    unk = tf.reduce_sum(
        tf.one_hot(list(masked_ids), vocab_size, on_value=-float("inf"), off_value=0.0), axis=0
    )  # (V,): -inf at every masked id
    inverse = 1.0 / tf.where(temperature > 0.0, temperature, 1.0)
    positions = tf.range(tf.cast(count, tf.int64), dtype=tf.int64)
    pairs = tf.stack([tf.fill(tf.shape(positions), seed), positions], axis=1)  # (N, 2)

    def draw(logits, position):
        return tf.random.stateless_categorical(
            logits * inverse, 1, seed=tf.gather(pairs, position), dtype=tf.int32
        )[:, 0]

    def greedy(logits, position):
        return tf.argmax(logits + unk, axis=-1, output_type=tf.int32)

    def sample(logits, position):
        return draw(logits + unk, position)

    def sample_top_k(logits, position):
        values, indices = tf.math.top_k(logits + unk, k=top_k)  # (B, k) each
        return tf.gather(indices, draw(values, position), batch_dims=1)

    return [greedy, sample, sample_top_k]


def pick_row(logits, temperature, top_k, seed, position, masked_ids=(contract.UNK_TOKEN_ID,)):
    """`(1, V)` logits of one request at new-token number `position` -> `(1,)` int32.

    Exactly the draw of `pickers(...)[mode(...)](logits, position)` for a
    batch of one: the rule above, through the same two functions.
    """
    vocab_size = tf.shape(logits)[-1]
    choices = pickers(temperature, top_k, seed, position + 1, vocab_size, masked_ids)
    return tf.switch_case(
        mode(temperature, top_k, vocab_size), [lambda pick=pick: pick(logits, position) for pick in choices]
    )


def pick_rows(logits, temperature, top_k, seed, position, masked_ids=(contract.UNK_TOKEN_ID,)):
    """The next token of B independent requests, each with its own scalars.

    Row b is drawn as `pick_row` draws it alone (a `(1, V)` batch), so a
    request decoded in a shared batch gets the tokens it would get from
    `generate` on its own.

    Args:
        logits: `(B, V)` float32, each row's logits of its last consumed token.
        temperature: `(B,)` float32 ≥ 0.
        top_k: `(B,)` int32 in [0, V].
        seed: `(B,)` int64.
        position: `(B,)` int32, each row's new-token number (0 = its first).
        masked_ids: token ids never picked.

    Returns:
        `(B,)` int32 token ids.

    Example:

    >>> logits = tf.zeros((2, 65))  # (B, V)
    >>> pick_rows(logits, tf.constant([0.0, 0.8]), tf.constant([0, 40]), tf.constant([7, 7], tf.int64),
    ...           tf.constant([0, 3]))
    <tf.Tensor: shape=(2,), dtype=int32, ...>
    """

    def one(row):
        row_logits, row_temperature, row_top_k, row_seed, row_position = row
        picked = pick_row(
            row_logits[tf.newaxis], row_temperature, row_top_k, row_seed, row_position, masked_ids
        )
        return picked[0]

    return tf.map_fn(
        one, (logits, temperature, top_k, seed, position), fn_output_signature=tf.TensorSpec((), tf.int32)
    )
