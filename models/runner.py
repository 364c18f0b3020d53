"""Running a chain language model from its packed recurrent state.

A chain is `Embedding → Recurrent … → Dense(logits)` (optional `Dropout`
between), as `build_language_model` makes and as a converted Keras model is;
its packed state is `models/state.py`'s. Two ways to run one:

- `run_language_model(model, tokens (B, T), state)`: whole sequences, each
  `Recurrent` called on its unpacked `initial_state`. The `serving_default`
  and `step` signatures call it.
- `run_language_model_token(model, tokens (B,), cell_states)`: one position
  without a time axis, on the cells' own states (`unpack_cell_states`), for
  token loops (`generate`), which unpack once, run it per token and pack once.

Both compute the same function (tests/models/test_state.py).
"""

from __future__ import annotations

import contextlib

import keras
import tensorflow as tf
from keras import ops

from rnnserve.models.recurrent import Recurrent
from rnnserve.models.state import pack_states, unpack_states


def _embed(layer, tokens):
    """A plain `Embedding` as one gather. Keras' `take` first maps negative
    ids (three more graph ops per token); the signatures have checked that
    every id is in [0, V). Quantized embeddings keep their own call."""
    if type(layer) is keras.layers.Embedding and not layer.quantization_mode:
        return ops.cast(tf.gather(layer.embeddings, tokens), layer.compute_dtype)
    return layer(tokens)


def read_weights(model):
    """Every variable of `model` paired with its value read now: the
    `weights` of `run_language_model_token`, made before a token loop."""
    return [(variable, tf.convert_to_tensor(variable)) for variable in model.variables]


def run_language_model_token(model, tokens, cell_states, weights=None):
    """One position of a chain language model in inference, without a time
    axis: `tokens (B,)` → `(logits (B, V) float32, new cell states)`.

    Each `Recurrent` runs `Recurrent.step` (one cell call per sub-layer) on
    the structure of `unpack_cell_states`, every other layer runs on
    `(B, ·)`. Equal to `run_language_model` on `tokens[:, None]`.

    A token loop (generation) calls this per token, and at B = 1 a token
    costs a few µs per graph op; so `weights`, the model's variables paired
    with their values read before the loop (`read_weights`; the pairs of
    `keras.StatelessScope`), lets the loop body use those values instead of
    reading each variable again on every iteration.
    """
    scope = keras.StatelessScope(weights) if weights is not None else contextlib.nullcontext()
    x, position, finals = tokens, 0, []
    with scope:
        for layer in model.layers:
            if isinstance(layer, keras.layers.InputLayer):
                continue
            if isinstance(layer, keras.layers.Embedding):
                x = _embed(layer, x)
            elif isinstance(layer, Recurrent):
                x, final = layer.step(x, cell_states[position])
                finals.append(final)
                position += 1
            else:
                x = layer(x, training=False)
    return ops.cast(x, "float32"), finals


def run_language_model(model, tokens, state=None, training=False):
    """Runs a chain language model from a packed state.

    Args:
        model: A chain model (see `models/state.py`).
        tokens: `(B, T)` int token ids.
        state: `(B, S)` float packed state; `None` means zeros.
        training: Passed to every layer (dropout).

    Returns:
        `(logits (B, T, V), state (B, S))`, the state after the last token.
        (One position in inference costs one cell call per sub-layer: that
        shortcut is `Recurrent`'s own.)

    Example:

    >>> from rnnserve.models import build_language_model
    >>> model = build_language_model(65, units=8)
    >>> logits, state = run_language_model(model, np.zeros((2, 5), "int32"))
    >>> tuple(logits.shape), tuple(state.shape)
    ((2, 5, 65), (2, 16))
    """
    states = None if state is None else unpack_states(model, state)
    x, finals = tokens, []
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        if isinstance(layer, Recurrent):
            initial = None if states is None else states[len(finals)]
            x, final = layer(x, initial_state=initial, training=training)
            finals.append(final)
        else:
            x = layer(x, training=training)
    return ops.cast(x, "float32"), pack_states(model, finals)
