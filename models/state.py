"""The packed recurrent state of a language model: one float32 vector per
sequence holding every state tensor of every recurrent layer.

A language model here is a chain of layers (`Embedding`, one or more
`Recurrent`, optional `Dropout`, `Dense`), as `build_language_model` makes
and as a converted Keras model is. The packed state concatenates, for each
`Recurrent` in order, each of its state tensors (h, then c for the LSTM
family) transposed from `(L·D, B, H)` to `(B, L·D·H)`:

    state[:, offset : offset + H] = recurrent_k.state_j[layer·D + direction]

so its width S is derived from the cells' `state_size`, whatever the cells
are. All zeros is a fresh sequence. Two granularities unpack it:
`unpack_states` gives each `Recurrent` its `initial_state` (`(L·D, B, H)`
tensors), `unpack_cell_states` gives each sub-layer its cell's own `(B, H)`
states (what a token-by-token loop carries); `pack_states` and
`pack_cell_states` are their inverses. `models/runner.py` runs a chain
language model from a packed state.
"""

from __future__ import annotations

from keras import ops

from rnnserve.models.recurrent import Recurrent


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

    >>> from rnnserve.models import build_language_model
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


def _cell_state_slots(model):
    """Each `state_layout` entry with where its tensor sits among the cell
    states: `(entry, recurrent, sub-layer index, state index)`."""
    layers = recurrent_layers(model)
    slots = []
    for entry in state_layout(model):
        layer = layers[entry["recurrent"]]
        index = entry["layer"] * layer.num_directions + entry["direction"]
        slots.append((entry, entry["recurrent"], index, layer.state_names.index(entry["state"])))
    return slots


def unpack_cell_states(model, state):
    """`(B, S)` packed state → per `Recurrent`, per sub-layer (torch order),
    the cell's state list `[h]` or `[h, c]`, each `(B, H)` a slice of the
    packed state: what `Recurrent.step` and `run_language_model_token` take."""
    layers = recurrent_layers(model)
    structured = [[[None] * len(layer.state_names) for _ in layer.rnns] for layer in layers]
    for entry, position, index, j in _cell_state_slots(model):
        value = state[:, entry["offset"] : entry["offset"] + entry["size"]]
        structured[position][index][j] = ops.cast(value, layers[position].compute_dtype)
    return structured


def pack_cell_states(model, cell_states):
    """The inverse of `unpack_cell_states`: → `(B, S)` float32."""
    parts = [
        ops.cast(cell_states[position][index][j], "float32")
        for _, position, index, j in _cell_state_slots(model)
    ]
    return ops.concatenate(parts, axis=-1) if len(parts) > 1 else parts[0]
