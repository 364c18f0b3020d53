"""`load_keras_weights` makes our cells reproduce Keras' built-in SimpleRNN,
LSTM and GRU (both reset_after variants), alone and in Bidirectional."""

import keras
import numpy as np
import pytest

from rnnserve.models import GRUCell, LSTMCell, Recurrent, SimpleRNNCell
from rnnserve.models.convert import load_keras_weights

TOL = 1e-5

# name → (built-in layer factory, our cell factory, Recurrent cell name, kwargs)
BUILTINS = {
    "SimpleRNN": (keras.layers.SimpleRNN, SimpleRNNCell, "rnn", {}),
    "LSTM": (keras.layers.LSTM, LSTMCell, "lstm", {}),
    "GRU_reset_after": (keras.layers.GRU, GRUCell, "gru", {"reset_after": True}),
    "GRU_reset_before": (keras.layers.GRU, GRUCell, "gru", {"reset_after": False}),
}


def _randomize(layer, rng):
    """Keras' zero biases would hide bias mistakes: give every weight values."""
    for weight in layer.weights:
        weight.assign(rng.standard_normal(weight.shape).astype("float32") * 0.5)


@pytest.mark.parametrize("name", sorted(BUILTINS))
def test_rnn_over_our_cell_equals_builtin_layer(name, rng):
    builtin_class, cell_class, _, kwargs = BUILTINS[name]
    x = rng.standard_normal((4, 6, 5)).astype("float32")
    builtin = builtin_class(8, return_sequences=True, return_state=True, **kwargs)
    expected = builtin(x)
    _randomize(builtin, rng)
    expected = builtin(x)
    ours = keras.layers.RNN(cell_class(8, **kwargs), return_sequences=True, return_state=True)
    load_keras_weights(ours, builtin)
    for a, b in zip(ours(x), expected, strict=True):
        np.testing.assert_allclose(a, b, atol=TOL, rtol=0)


@pytest.mark.parametrize("name", sorted(BUILTINS))
def test_our_cell_loads_from_builtin_cell(name, rng):
    builtin_class, cell_class, _, kwargs = BUILTINS[name]
    x = rng.standard_normal((4, 5)).astype("float32")
    builtin = builtin_class(8, **kwargs).cell
    builtin.build((None, 5))
    _randomize(builtin, rng)
    ours = cell_class(8, **kwargs)
    load_keras_weights(ours, builtin)
    states = [rng.standard_normal((4, 8)).astype("float32") for _ in ours.state_size]
    out, new_states = ours(x, states)
    expected_out, expected_states = builtin(x, states if len(states) > 1 else states[0])
    np.testing.assert_allclose(out, expected_out, atol=TOL, rtol=0)


@pytest.mark.parametrize("name", sorted(BUILTINS))
def test_recurrent_equals_builtin_bidirectional(name, rng):
    builtin_class, _, cell, kwargs = BUILTINS[name]
    x = rng.standard_normal((3, 7, 5)).astype("float32")
    builtin = keras.layers.Bidirectional(builtin_class(6, return_sequences=True, **kwargs))
    builtin(x)
    _randomize(builtin, rng)
    ours = Recurrent(cell, 6, bidirectional=True, **kwargs)
    load_keras_weights(ours, builtin)
    outputs, _ = ours(x)
    np.testing.assert_allclose(outputs, builtin(x), atol=TOL, rtol=0)


def test_stacked_builtins_load_into_a_multilayer_recurrent(rng):
    x = rng.standard_normal((3, 7, 5)).astype("float32")
    first = keras.layers.LSTM(6, return_sequences=True)
    second = keras.layers.LSTM(6, return_sequences=True)
    expected = second(first(x))
    _randomize(first, rng)
    _randomize(second, rng)
    expected = second(first(x))
    ours = Recurrent("lstm", 6, num_layers=2)
    load_keras_weights(ours, [first, second])
    np.testing.assert_allclose(ours(x)[0], expected, atol=TOL, rtol=0)


def test_keras_bidirectional_over_our_cells_equals_builtin(rng):
    x = rng.standard_normal((3, 7, 5)).astype("float32")
    builtin = keras.layers.Bidirectional(keras.layers.GRU(6, return_sequences=True))
    builtin(x)
    _randomize(builtin, rng)
    ours = keras.layers.Bidirectional(keras.layers.RNN(GRUCell(6), return_sequences=True))
    load_keras_weights(ours, builtin)
    np.testing.assert_allclose(ours(x), builtin(x), atol=TOL, rtol=0)


@pytest.mark.parametrize(
    "target, source, message",
    [
        (lambda: LSTMCell(8), lambda: keras.layers.GRU(8), "cannot load a Keras GRUCell into a LSTMCell"),
        (lambda: LSTMCell(8), lambda: keras.layers.LSTM(9), "units=9"),
        (lambda: GRUCell(8), lambda: keras.layers.GRU(8, reset_after=False), "reset_after=False"),
        (lambda: SimpleRNNCell(8), lambda: keras.layers.SimpleRNN(8, activation="relu"), "activation='relu'"),
        (lambda: Recurrent("lstm", 8, num_layers=2), lambda: keras.layers.LSTM(8), "2 cell"),
        (lambda: Recurrent("peephole_lstm", 8), lambda: keras.layers.LSTM(8), "PeepholeLSTMCell"),
    ],
)
def test_mismatches_are_refused_with_the_reason(target, source, message):
    source = source()
    source(np.zeros((1, 2, 3), "float32"))
    with pytest.raises(ValueError, match=message):
        load_keras_weights(target(), source)


def test_wrong_input_width_names_the_weight(rng):
    source = keras.layers.LSTM(8)
    source(np.zeros((1, 2, 3), "float32"))
    target = keras.layers.RNN(LSTMCell(8))
    target(np.zeros((1, 2, 4), "float32"))
    with pytest.raises(ValueError, match=r"weight `kernel` has shape \(3, 32\) in the source and \(4, 32\)"):
        load_keras_weights(target, source)
