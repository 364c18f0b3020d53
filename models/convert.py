"""Weight import and export: PyTorch `nn.RNN/LSTM/GRU` and Keras' built-in
`SimpleRNN/LSTM/GRU` to and from this package's cells.

torch keeps, for layer l and direction d (suffix `_l{l}` plus `_reverse`):

    weight_ih (G·H, in)    weight_hh (G·H, H)    bias_ih (G·H,)    bias_hh (G·H,)

with gates in torch's order; ours keep `kernel` (in, G·H), `recurrent_kernel`
(H, G·H) and `bias` in Keras' order. So each matrix is transposed, gate
blocks are permuted (only the GRU's differ: torch r, z, n vs Keras z, r, h),
and the two torch biases are summed where they only ever appear summed
(Elman RNN and LSTM), or kept as the two rows of our GRU bias (2, 3H), where
the reset gate multiplies the recurrent one. Exporting back writes our bias
as `bias_ih` and zeros as `bias_hh`, which gives torch the same sums.

Parameter counts follow: a 1-layer Elman RNN 10→20 is 640 parameters in
torch (200 + 400 + 20 + 20) and 620 here (one bias of 20); LSTMs differ by
4H per layer and direction; GRUs (reset_after) are equal.

Peephole and coupled LSTMs have no torch counterpart; Keras' built-in layers
have the same layout as our cells, so `load_keras_weights` is a checked copy.
torch is imported lazily, only where torch tensors are produced.
"""

from __future__ import annotations

import collections

import keras
import numpy as np

from rnnserve.models.cells import GRUCell, LSTMCell, SimpleRNNCell, cell_name
from rnnserve.models.recurrent import Recurrent

# Our gate blocks, in Keras order, listed by their index in torch's order.
TORCH_GATE_ORDER = {
    SimpleRNNCell: [0],  # h
    LSTMCell: [0, 1, 2, 3],  # torch i, f, g, o == Keras i, f, c, o
    GRUCell: [1, 0, 2],  # Keras z, r, h == torch blocks 1 (z), 0 (r), 2 (n)
}
# torch module `mode` for each of our cell classes.
TORCH_MODES = {SimpleRNNCell: ("RNN_TANH", "RNN_RELU"), LSTMCell: ("LSTM",), GRUCell: ("GRU",)}
# Keras built-in cell class for each of our cell classes.
KERAS_CELLS = {
    SimpleRNNCell: keras.layers.SimpleRNNCell,
    LSTMCell: keras.layers.LSTMCell,
    GRUCell: keras.layers.GRUCell,
}
# Weights a cell of ours shares with its Keras built-in counterpart.
KERAS_WEIGHT_NAMES = ("kernel", "recurrent_kernel", "bias")


def _numpy(value):
    """A torch tensor, numpy array or Keras variable as a float32 numpy array."""
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value, dtype=np.float32)


def _permute_gates(matrix, order, units, axis):
    """Reorders the `units`-wide gate blocks of `matrix` along `axis`."""
    blocks = np.split(matrix, matrix.shape[axis] // units, axis=axis)
    return np.concatenate([blocks[i] for i in order], axis=axis)


def _inverse(order):
    return list(np.argsort(order))


def _torch_suffix(index, num_directions):
    layer, direction = divmod(index, num_directions)
    return f"_l{layer}" + ("_reverse" if direction else "")


def _check_torch_convertible(layer):
    if not isinstance(layer, Recurrent):
        raise ValueError(
            f"Torch weights load into a `models.Recurrent` layer; received {type(layer).__name__}."
        )
    if layer.cell_class not in TORCH_GATE_ORDER:
        raise ValueError(
            f"`{cell_name(layer.cell_class) or layer.cell_class.__name__}` "
            "cells have no PyTorch counterpart (torch has nn.RNN, nn.LSTM "
            "and nn.GRU only); use cell 'rnn', 'lstm' or 'gru'."
        )
    cell = layer.cells[0]
    if isinstance(cell, GRUCell) and not cell.reset_after:
        raise ValueError(
            "torch's nn.GRU is the reset_after=True variant; this layer has "
            "reset_after=False, so its weights cannot map to torch."
        )


def _check_torch_module(layer, module):
    """Compares a torch module's hyperparameters with the layer's."""
    mode = getattr(module, "mode", None)
    if mode not in TORCH_MODES[layer.cell_class]:
        raise ValueError(
            f"Cannot load torch {type(module).__name__} (mode {mode!r}) into a "
            f"'{cell_name(layer.cell_class)}' layer."
        )
    checks = {
        "hidden_size": (module.hidden_size, layer.units),
        "num_layers": (module.num_layers, layer.num_layers),
        "bidirectional": (bool(module.bidirectional), layer.bidirectional),
        "proj_size": (getattr(module, "proj_size", 0), 0),
    }
    for name, (theirs, ours) in checks.items():
        if theirs != ours:
            raise ValueError(
                f"torch module has {name}={theirs!r} but the layer has {ours!r}; build the layer to match."
            )
    if mode in ("RNN_TANH", "RNN_RELU"):
        ours = keras.activations.serialize(layer.cells[0].activation)
        theirs = "tanh" if mode == "RNN_TANH" else "relu"
        if ours != theirs:
            raise ValueError(
                f"torch nn.RNN uses nonlinearity={theirs!r} but the layer's activation is {ours!r}."
            )


def _expected_torch_shapes(layer, input_size):
    """{key: shape} of the torch state dict equivalent to `layer`."""
    shapes = {}
    gate_units = layer.cells[0].gate_units
    for index, cell in enumerate(layer.cells):
        suffix = _torch_suffix(index, layer.num_directions)
        in_dim = input_size if index < layer.num_directions else layer.output_size
        shapes[f"weight_ih{suffix}"] = (gate_units, in_dim)
        shapes[f"weight_hh{suffix}"] = (gate_units, layer.units)
        if cell.use_bias:
            shapes[f"bias_ih{suffix}"] = (gate_units,)
            shapes[f"bias_hh{suffix}"] = (gate_units,)
    return shapes


def _check_keys_and_shapes(arrays, expected, source_name):
    """Raises ValueError naming the first missing, extra or misshaped key."""
    missing = [k for k in expected if k not in arrays]
    if missing:
        raise ValueError(f"{source_name} is missing key {missing[0]!r} (expected keys: {sorted(expected)}).")
    extra = [k for k in arrays if k not in expected]
    if extra:
        raise ValueError(
            f"{source_name} has unexpected key {extra[0]!r} (expected keys: {sorted(expected)})."
        )
    for key, shape in expected.items():
        if tuple(arrays[key].shape) != tuple(shape):
            raise ValueError(
                f"{source_name} key {key!r} has shape {tuple(arrays[key].shape)}, expected {tuple(shape)}."
            )


def load_torch_weights(layer, source):
    """Loads torch `nn.RNN`/`nn.LSTM`/`nn.GRU` weights into a `Recurrent`.

    Every key and shape is checked before anything is assigned; the layer is
    built from the torch input size if it is not built yet. After loading,
    the layer's outputs and final states equal torch's (to float32
    round-off), batch_first or not.

    Args:
        layer: A `models.Recurrent` with cell `"rnn"`, `"lstm"` or `"gru"`
            (reset_after=True).
        source: A torch `nn.RNN`, `nn.LSTM` or `nn.GRU`, or its `state_dict()`
            (values torch tensors or numpy arrays).

    Raises:
        ValueError: naming the key, or the hyperparameter, that does not match.

    Example:

    >>> import torch
    >>> torch_lstm = torch.nn.LSTM(10, 20, num_layers=2, batch_first=True)
    >>> layer = Recurrent("lstm", 20, num_layers=2)
    >>> load_torch_weights(layer, torch_lstm)
    """
    _check_torch_convertible(layer)
    if hasattr(source, "state_dict"):
        _check_torch_module(layer, source)
        source_name, state_dict = f"torch {type(source).__name__}", source.state_dict()
    else:
        source_name, state_dict = "state dict", source
    arrays = {key: _numpy(value) for key, value in state_dict.items()}
    if "weight_ih_l0" not in arrays:
        raise ValueError(f"{source_name} is missing key 'weight_ih_l0'.")
    input_size = arrays["weight_ih_l0"].shape[-1]
    _check_keys_and_shapes(arrays, _expected_torch_shapes(layer, input_size), source_name)
    if not layer.built:
        layer.build((None, None, input_size))
    if layer.input_spec.axes[-1] != input_size:
        raise ValueError(
            f"{source_name} key 'weight_ih_l0' has input size {input_size} but "
            f"the layer was built for {layer.input_spec.axes[-1]} features."
        )

    order = TORCH_GATE_ORDER[layer.cell_class]
    for index, cell in enumerate(layer.cells):
        suffix = _torch_suffix(index, layer.num_directions)
        cell.kernel.assign(_permute_gates(arrays[f"weight_ih{suffix}"].T, order, layer.units, 1))
        cell.recurrent_kernel.assign(_permute_gates(arrays[f"weight_hh{suffix}"].T, order, layer.units, 1))
        if cell.use_bias:
            b_ih = _permute_gates(arrays[f"bias_ih{suffix}"], order, layer.units, 0)
            b_hh = _permute_gates(arrays[f"bias_hh{suffix}"], order, layer.units, 0)
            separate = isinstance(cell, GRUCell)
            cell.bias.assign(np.stack([b_ih, b_hh]) if separate else b_ih + b_hh)


def torch_state_dict(layer):
    """Returns the torch state dict of a `Recurrent` (the inverse of loading).

    The result loads with `module.load_state_dict` into the torch module of
    the same mode, sizes, layers and directions.

    Args:
        layer: A built `models.Recurrent` with cell `"rnn"`, `"lstm"` or
            `"gru"` (reset_after=True).

    Returns:
        An `OrderedDict` of torch float32 tensors, keys in torch's order.

    Example:

    >>> import torch
    >>> layer = Recurrent("gru", 20)
    >>> _ = layer(np.zeros((1, 3, 10), "float32"))
    >>> torch.nn.GRU(10, 20).load_state_dict(torch_state_dict(layer))
    <All keys matched successfully>
    """
    _check_torch_convertible(layer)
    if not layer.built:
        raise ValueError("The layer has no weights yet; call it on inputs or build it first.")
    try:
        import torch
    except ImportError as error:
        raise ImportError(
            "torch_state_dict needs PyTorch; install it with `pip install 'rnnserve[torch]'`."
        ) from error
    inverse = _inverse(TORCH_GATE_ORDER[layer.cell_class])
    state = collections.OrderedDict()
    for index, cell in enumerate(layer.cells):
        suffix = _torch_suffix(index, layer.num_directions)
        state[f"weight_ih{suffix}"] = _permute_gates(_numpy(cell.kernel), inverse, layer.units, 1).T
        state[f"weight_hh{suffix}"] = _permute_gates(_numpy(cell.recurrent_kernel), inverse, layer.units, 1).T
        if cell.use_bias:
            bias = _numpy(cell.bias)
            b_ih, b_hh = (bias[0], bias[1]) if bias.ndim == 2 else (bias, np.zeros_like(bias))
            state[f"bias_ih{suffix}"] = _permute_gates(b_ih, inverse, layer.units, 0)
            state[f"bias_hh{suffix}"] = _permute_gates(b_hh, inverse, layer.units, 0)
    return collections.OrderedDict((k, torch.from_numpy(np.ascontiguousarray(v))) for k, v in state.items())


# -- Keras built-ins --------------------------------------------------------


def _source_cells(source):
    """Flattens Keras built-in layers / cells / Bidirectionals into cells, torch order."""
    if isinstance(source, (list, tuple)):
        return [cell for item in source for cell in _source_cells(item)]
    if isinstance(source, keras.layers.Bidirectional):
        return _source_cells(source.forward_layer) + _source_cells(source.backward_layer)
    if isinstance(source, keras.layers.RNN):
        return [source.cell]
    if isinstance(source, tuple(KERAS_CELLS.values())):
        return [source]
    raise ValueError(
        "`source` must be a Keras SimpleRNN, LSTM or GRU layer, their cell, a "
        f"Bidirectional of them or a list of those; received {type(source).__name__}."
    )


def _target_cells(target):
    """Flattens our cell / RNN(cell) / Bidirectional / Recurrent into cells, torch order."""
    if isinstance(target, Recurrent):
        return target.cells
    if isinstance(target, keras.layers.Bidirectional):
        return _target_cells(target.forward_layer) + _target_cells(target.backward_layer)
    if isinstance(target, keras.layers.RNN):
        return [target.cell]
    if type(target) in KERAS_CELLS:
        return [target]
    raise ValueError(
        "`target` must be a models SimpleRNNCell, LSTMCell or GRUCell, a "
        "keras.layers.RNN or Bidirectional over one, or a Recurrent; "
        f"received {type(target).__name__}."
    )


def _check_cell_pair(ours, theirs, position):
    """Raises ValueError when a Keras built-in cell cannot load into ours."""
    expected = KERAS_CELLS.get(type(ours))
    if expected is None:
        raise ValueError(
            f"Cell {position}: a {type(ours).__name__} has no Keras built-in "
            "counterpart (Keras has SimpleRNN, LSTM and GRU); nothing can load into it."
        )
    if type(theirs) is not expected:
        raise ValueError(
            f"Cell {position}: cannot load a Keras {type(theirs).__name__} into "
            f"a {type(ours).__name__}; expected a Keras {expected.__name__}."
        )
    pairs = {
        "units": (theirs.units, ours.units),
        "activation": (
            keras.activations.serialize(theirs.activation),
            keras.activations.serialize(ours.activation),
        ),
        "use_bias": (theirs.use_bias, ours.use_bias),
    }
    if hasattr(ours, "recurrent_activation"):
        pairs["recurrent_activation"] = (
            keras.activations.serialize(theirs.recurrent_activation),
            keras.activations.serialize(ours.recurrent_activation),
        )
    if isinstance(ours, GRUCell):
        pairs["reset_after"] = (theirs.reset_after, ours.reset_after)
    for name, (their_value, our_value) in pairs.items():
        if their_value != our_value:
            raise ValueError(
                f"Cell {position}: the Keras {type(theirs).__name__} has "
                f"{name}={their_value!r} but the target has {name}={our_value!r}."
            )


def load_keras_weights(target, source):
    """Copies weights from Keras' built-in recurrent layers into ours.

    Our cells use Keras' weight layout, so this is a copy with every pairing,
    hyperparameter and shape checked first. Unbuilt targets are built from
    the source's input size.

    Args:
        target: A `SimpleRNNCell`/`LSTMCell`/`GRUCell` of this package, a
            `keras.layers.RNN` or `keras.layers.Bidirectional` over one, or a
            `Recurrent` (its L·D cells in torch order).
        source: A Keras `SimpleRNN`/`LSTM`/`GRU` layer, their cells, a
            `Bidirectional` of them, or a list of those matching the
            target's cells one to one (e.g. one per layer of a `Recurrent`).

    Raises:
        ValueError: naming the cell, hyperparameter or weight that differs.

    Example:

    >>> builtin = keras.layers.Bidirectional(keras.layers.GRU(8, return_sequences=True))
    >>> _ = builtin(np.zeros((2, 5, 3), "float32"))  # builds its weights
    >>> ours = Recurrent("gru", 8, bidirectional=True)
    >>> load_keras_weights(ours, builtin)
    """
    targets, sources = _target_cells(target), _source_cells(source)
    if len(targets) != len(sources):
        raise ValueError(
            f"The target has {len(targets)} cell(s) (layers × directions) but the source has {len(sources)}."
        )
    for position, (ours, theirs) in enumerate(zip(targets, sources)):
        _check_cell_pair(ours, theirs, position)
        if not theirs.built:
            raise ValueError(
                f"Cell {position}: the Keras source has no weights yet; call it on inputs first."
            )
    if isinstance(target, Recurrent) and not target.built:
        target.build((None, None, sources[0].kernel.shape[0]))
    for position, (ours, theirs) in enumerate(zip(targets, sources)):
        if not ours.built:
            ours.build((None, theirs.kernel.shape[0]))
        for name in KERAS_WEIGHT_NAMES:
            their_weight, our_weight = getattr(theirs, name, None), getattr(ours, name, None)
            if their_weight is not None and tuple(their_weight.shape) != tuple(our_weight.shape):
                raise ValueError(
                    f"Cell {position}: weight `{name}` has shape "
                    f"{tuple(their_weight.shape)} in the source and "
                    f"{tuple(our_weight.shape)} in the target."
                )
    for ours, theirs in zip(targets, sources):
        for name in KERAS_WEIGHT_NAMES:
            if getattr(theirs, name, None) is not None:
                getattr(ours, name).assign(_numpy(getattr(theirs, name)))
