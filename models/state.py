"""The packed recurrent state of a language model: one float32 vector per
sequence holding every state tensor of every recurrent layer.

A language model here is a chain of layers (`Embedding`, one or more
`Recurrent`, optional `Dropout`, `Dense`), as `build_language_model` makes
and as a converted Keras model is. The packed state concatenates, for each
`Recurrent` in order, each of its state tensors (h, then c for the LSTM
family) transposed from `(L·D, B, H)` to `(B, L·D·H)`:

    state[:, offset : offset + H] = recurrent_k.state_j[layer·D + direction]

so its width S is derived from the cells' `state_size`, whatever the cells
are. All zeros is a fresh sequence. `run_language_model` runs the chain from
a packed state and returns the next one; it is what the `step` and
`generate` signatures call. It is `unpack_states`, `run_language_model_states`
and `pack_states` in a row; a token-by-token loop calls the middle one per
token and packs once.
"""

from __future__ import annotations

import keras
from keras import ops

from models.recurrent import Recurrent


def recurrent_layers(model):
    """The `Recurrent` layers of a chain model, in order."""
    return [layer for layer in model.layers if isinstance(layer, Recurrent)]


def state_layout(model):
    """Where each state tensor sits in the packed state.

    Returns:
        A list of dicts `{"recurrent", "layer", "direction", "state",
        "offset", "size"}`, one per (Recurrent, state, layer, direction), in
        packing order. The packed width S is `sum(size)`.

    Example:

    >>> model = build_language_model(65, cell="lstm", units=8, num_layers=2)
    >>> [(e["layer"], e["state"], e["offset"]) for e in state_layout(model)]
    [(0, 'h', 0), (1, 'h', 8), (0, 'c', 16), (1, 'c', 24)]
    """
    layout, offset = [], 0
    for position, layer in enumerate(recurrent_layers(model)):
        for state in layer.state_names:
            for index in range(len(layer.rnns)):
                layer_index, direction = divmod(index, layer.num_directions)
                layout.append(
                    {
                        "recurrent": position,
                        "layer": layer_index,
                        "direction": direction,
                        "state": state,
                        "offset": offset,
                        "size": layer.units,
                    }
                )
                offset += layer.units
    return layout


def state_size(model):
    """S, the width of the packed state of a chain model."""
    return sum(entry["size"] for entry in state_layout(model))


def _layer_state_width(layer):
    return len(layer.state_names) * len(layer.rnns) * layer.units


def pack_state(layer, final_state):
    """`(L·D, B, H)` state tensor(s) of one `Recurrent` → `(B, n·L·D·H)`."""
    tensors = final_state if isinstance(final_state, (list, tuple)) else [final_state]
    parts = []
    for tensor in tensors:  # (L·D, B, H)
        batch = ops.shape(tensor)[1]
        parts.append(ops.reshape(ops.transpose(tensor, (1, 0, 2)), (batch, -1)))
    return ops.concatenate(parts, axis=-1) if len(parts) > 1 else parts[0]


def unpack_state(layer, packed):
    """`(B, n·L·D·H)` → the `initial_state` structure one `Recurrent` takes."""
    batch = ops.shape(packed)[0]
    size = len(layer.rnns) * layer.units
    tensors = []
    for j in range(len(layer.state_names)):
        block = ops.reshape(packed[:, j * size : (j + 1) * size], (batch, len(layer.rnns), layer.units))
        tensors.append(ops.transpose(block, (1, 0, 2)))  # (L·D, B, H)
    return tensors[0] if len(tensors) == 1 else tuple(tensors)


def unpack_states(model, state):
    """`(B, S)` packed state → one `initial_state` structure per `Recurrent`."""
    structured, offset = [], 0
    for layer in recurrent_layers(model):
        width = _layer_state_width(layer)
        structured.append(
            unpack_state(layer, ops.cast(state[:, offset : offset + width], layer.compute_dtype))
        )
        offset += width
    return structured


def pack_states(model, states):
    """The inverse of `unpack_states`: per-`Recurrent` states → `(B, S)` float32."""
    packed = [
        ops.cast(pack_state(layer, final), "float32") for layer, final in zip(recurrent_layers(model), states)
    ]
    return ops.concatenate(packed, axis=-1) if len(packed) > 1 else packed[0]


def run_language_model_states(model, tokens, states=None, training=False):
    """`run_language_model` on unpacked states (one structure per `Recurrent`).

    A loop over tokens (generation) unpacks the state once, calls this per
    token, and packs once at the end. For one position (`tokens` of static
    shape `(B, 1)`) the layers after the last `Recurrent` (per-position:
    `Dropout`, `Dense`) run on `(B, H)` without the time axis: a `Dense` on
    `(B, 1, H)` is a tensordot of a dozen graph ops, on `(B, H)` one matmul,
    and a generated token costs a few µs per op.

    Returns:
        `(logits (B, T, V) float32, final states)`.
    """
    layers = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
    last_recurrent = max((i for i, layer in enumerate(layers) if isinstance(layer, Recurrent)), default=None)
    one_position = tokens.shape[1] == 1 and last_recurrent is not None
    x, position, finals = tokens, 0, []
    for index, layer in enumerate(layers):
        if isinstance(layer, Recurrent):
            initial = None if states is None else states[position]
            x, final = layer(x, initial_state=initial, training=training)
            finals.append(final)
            position += 1
            if one_position and index == last_recurrent:
                x = x[:, 0]  # (B, H)
        else:
            x = layer(x, training=training)
    if one_position:
        x = x[:, None]  # (B, 1, V)
    return ops.cast(x, "float32"), finals


def run_language_model(model, tokens, state=None, training=False):
    """Runs a chain language model from a packed state.

    Args:
        model: A chain model (see the module docstring).
        tokens: `(B, T)` int token ids.
        state: `(B, S)` float packed state; `None` means zeros.
        training: Passed to every layer (dropout).

    Returns:
        `(logits (B, T, V), state (B, S))`, the state after the last token.

    Example:

    >>> model = build_language_model(65, units=8)
    >>> logits, state = run_language_model(model, np.zeros((2, 5), "int32"))
    >>> logits.shape, state.shape
    ((2, 5, 65), (2, 16))
    """
    states = None if state is None else unpack_states(model, state)
    logits, finals = run_language_model_states(model, tokens, states, training)
    return logits, pack_states(model, finals)
