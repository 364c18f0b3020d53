"""Each cell computes exactly its paper's equations: compared in float64 with
the independent NumPy reference in `reference.py`, and its gradients with
central finite differences."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from rnnserve.models import CELLS
from tests.models import reference

CASES = {
    "rnn": ("rnn", {}),
    "rnn_relu": ("rnn", {"activation": "relu"}),
    "lstm": ("lstm", {}),
    "gru_reset_after": ("gru", {"reset_after": True}),
    "gru_reset_before": ("gru", {"reset_after": False}),
    "peephole_lstm": ("peephole_lstm", {}),
    "coupled_lstm": ("coupled_lstm", {}),
}
BATCH, STEPS, FEATURES, UNITS = 3, 5, 4, 6


def _float64_layer(case, rng):
    name, kwargs = CASES[case]
    cell = CELLS[name](UNITS, dtype="float64", **kwargs)
    layer = keras.layers.RNN(cell, return_sequences=True, return_state=True, dtype="float64")
    layer.build((None, None, FEATURES))
    for weight in cell.weights:
        weight.assign(rng.standard_normal(weight.shape) * 0.5)
    return layer


def _reference_kwargs(case):
    name, kwargs = CASES[case]
    if name == "rnn":
        return {"activation": (lambda z: np.maximum(z, 0.0)) if kwargs else np.tanh}
    return dict(kwargs)


@pytest.mark.parametrize("case", sorted(CASES))
def test_cell_matches_float64_numpy_reference(case, rng):
    layer = _float64_layer(case, rng)
    cell = layer.cell
    x = rng.standard_normal((BATCH, STEPS, FEATURES))
    initial = [rng.standard_normal((BATCH, UNITS)) for _ in cell.state_size]
    outputs, *states = layer(x, initial_state=initial)
    weights = {w.name: w.numpy() for w in cell.weights}
    c0 = initial[1] if len(initial) > 1 else None
    expected, expected_states = reference.run(
        CASES[case][0], x, weights, h0=initial[0], c0=c0, **_reference_kwargs(case)
    )
    np.testing.assert_allclose(outputs, expected, rtol=0, atol=1e-12)
    for ours, theirs in zip(states, expected_states, strict=True):
        np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-12)


@pytest.mark.parametrize("case", sorted(CASES))
def test_gradients_equal_central_finite_differences(case, rng):
    """d loss / d (every weight and the inputs) along random directions."""
    layer = _float64_layer(case, rng)
    x = tf.Variable(rng.standard_normal((BATCH, STEPS, FEATURES)))
    projection = rng.standard_normal((BATCH, STEPS, UNITS))
    variables = [x] + [w.value for w in layer.cell.weights]

    def loss():
        outputs, *states = layer(x)
        return tf.reduce_sum(outputs * projection) + sum(tf.reduce_sum(s**2) for s in states)

    with tf.GradientTape() as tape:
        value = loss()
    gradients = tape.gradient(value, variables)
    eps = 1e-6
    for variable, gradient in zip(variables, gradients, strict=True):
        for _ in range(3):
            direction = rng.standard_normal(variable.shape)
            original = variable.numpy()
            variable.assign(original + eps * direction)
            plus = loss().numpy()
            variable.assign(original - eps * direction)
            minus = loss().numpy()
            variable.assign(original)
            numeric = (plus - minus) / (2 * eps)
            analytic = float(np.sum(gradient.numpy() * direction))
            assert analytic == pytest.approx(numeric, rel=1e-6, abs=1e-7), variable.name
