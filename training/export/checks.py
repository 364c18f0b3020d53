"""In-graph input checks: a bad request fails with INVALID_ARGUMENT naming the input.

TF Serving does not compare a request's shapes or values with the
signature; whatever arrives is fed to the graph. So every signature checks
its inputs itself, before any computation runs on them, with
`tf.debugging.Assert`: a failing check aborts the call with
`InvalidArgumentError: assertion failed: [<message>] [<value>...]`, which TF
Serving returns as INVALID_ARGUMENT with that text.

Example:

```python
tokens, = guarded([tokens], [require(tf.shape(tokens)[1] > 0,
    "Received an invalid `tokens`: expected at least one token, got length", tf.shape(tokens)[1])])
```
"""

from __future__ import annotations

import tensorflow as tf


def require(condition, message, *values):
    """An assert op: fails with `message` followed by `values` unless `condition`.

    Args:
        condition: A scalar boolean tensor.
        message: One sentence naming the input and what was expected; the
            received values are printed after it.
        *values: Tensors printed after the message.
    """
    return tf.debugging.Assert(condition, [message, *values], summarize=8)


def guarded(tensors, checks):
    """`tensors`, made to depend on `checks` so nothing reads them before the checks pass."""
    with tf.control_dependencies(checks):
        return [tf.identity(tensor) for tensor in tensors]


def check_token_ids(tokens, vocab_size):
    """Checks that every id of `tokens` is in [0, V)."""
    return [
        require(
            tf.reduce_all((tokens >= 0) & (tokens < vocab_size)),
            f"Received an invalid `tokens`: every id must be in [0, {vocab_size}), got min and max",
            tf.reduce_min(tokens),
            tf.reduce_max(tokens),
        )
    ]


def check_tokens(tokens, vocab_size):
    """Checks `(B, T)` token ids to run the model on: T ≥ 1 and every id in [0, V)."""
    steps = tf.shape(tokens)[1]
    return [
        require(
            steps > 0,
            "Received an invalid `tokens`: expected at least one token per sequence, got length",
            steps,
        ),
        *check_token_ids(tokens, vocab_size),
    ]


def check_state(state, tokens, state_size):
    """Checks a `(B, S)` packed state against the model's S and the batch of `tokens`."""
    width, rows, batch = tf.shape(state)[1], tf.shape(state)[0], tf.shape(tokens)[0]
    return [
        require(
            width == state_size,
            f"Received an invalid `state`: expected width {state_size} (zeros, or the state "
            "a previous call returned), got width",
            width,
        ),
        require(
            rows == batch,
            "Received an invalid `state`: expected one row per sequence of `tokens`, got rows and batch",
            rows,
            batch,
        ),
    ]


def check_sampling(max_new_tokens, temperature, top_k, limit, vocab_size):
    """Checks the scalar sampling arguments of `generate` / `generate_text`."""
    return [
        require(
            (max_new_tokens >= 1) & (max_new_tokens <= limit),
            f"Received an invalid `max_new_tokens`: expected an integer in [1, {limit}] "
            "(max_new_tokens_limit in rnnserve.json), got",
            max_new_tokens,
        ),
        require(
            tf.math.is_finite(temperature) & (temperature >= 0.0),
            "Received an invalid `temperature`: expected a finite float >= 0 (0 is greedy), got",
            temperature,
        ),
        require(
            (top_k >= 0) & (top_k <= vocab_size),
            f"Received an invalid `top_k`: expected an integer in [0, {vocab_size}] (0 is no truncation), got",
            top_k,
        ),
    ]
