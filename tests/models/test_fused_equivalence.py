"""The fused kernels compute the cell path's function: `Recurrent` outputs
and final states equal `implementation="cell"` (i.e. `keras.layers.RNN` over
the same cells) to 1e-5, and their hand-written gradients equal
`tf.GradientTape` through the cell path to 1e-4 relative, in float32."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from rnnserve.models import Recurrent

TOL = 1e-5
GRAD_RTOL = 1e-4

# Every kernel variant: (cell, cell kwargs).
VARIANTS = {
    "rnn_tanh": ("rnn", {}),
    "rnn_relu": ("rnn", {"activation": "relu"}),
    "lstm": ("lstm", {}),
    "lstm_no_bias": ("lstm", {"use_bias": False}),
    "peephole_lstm": ("peephole_lstm", {}),
    "coupled_lstm": ("coupled_lstm", {}),
    "gru_reset_after": ("gru", {}),
    "gru_reset_before": ("gru", {"reset_after": False}),
    "gru_sigmoid_candidate": ("gru", {"activation": "sigmoid"}),
    "lstm_linear_output": ("lstm", {"activation": "linear"}),
}


def _pair(cell, kwargs, rng, **layer_kwargs):
    """A fused and a cell-path layer with the same random (non-zero) weights."""
    fused = Recurrent(cell, 6, implementation="fused", **layer_kwargs, **kwargs)
    reference = Recurrent(cell, 6, implementation="cell", **layer_kwargs, **kwargs)
    shape = (None, None, 4)
    fused.build(shape)
    reference.build(shape)
    for ours, theirs in zip(fused.weights, reference.weights, strict=True):
        value = rng.uniform(-0.6, 0.6, ours.shape).astype("float32")
        ours.assign(value)
        theirs.assign(value)
    return fused, reference


def _initial_state(layer, batch, rng):
    states = [
        rng.standard_normal((len(layer.rnns), batch, layer.units)).astype("float32") * 0.5
        for _ in layer.state_names
    ]
    return states[0] if len(states) == 1 else tuple(states)


def _flat(outputs, final_state):
    return [outputs, *(final_state if isinstance(final_state, tuple) else (final_state,))]


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_outputs_and_final_states_equal_the_cell_path(variant, rng):
    cell, kwargs = VARIANTS[variant]
    fused, reference = _pair(cell, kwargs, rng, num_layers=2, bidirectional=True)
    x = rng.standard_normal((3, 7, 4)).astype("float32")
    state = _initial_state(fused, 3, rng)
    for ours, theirs in zip(_flat(*fused(x, state)), _flat(*reference(x, state)), strict=True):
        np.testing.assert_allclose(ours, theirs, atol=TOL, rtol=0)


def _gradients(layer, x, state, upstream):
    x, state = tf.constant(x), tf.nest.map_structure(tf.constant, state)
    with tf.GradientTape() as tape:
        tape.watch([x, state])
        outputs = _flat(*layer(x, state, training=True))
        loss = sum(tf.reduce_sum(o * u) for o, u in zip(outputs, upstream, strict=True))
    return tape.gradient(loss, [x, *tf.nest.flatten(state), *layer.trainable_weights])


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_gradients_equal_autodiff_through_the_cell_path(variant, rng):
    """Gradients of a random linear function of every output (sequence and
    final states) w.r.t. inputs, initial states and every weight."""
    cell, kwargs = VARIANTS[variant]
    fused, reference = _pair(cell, kwargs, rng, num_layers=2, bidirectional=True)
    x = rng.standard_normal((3, 7, 4)).astype("float32")
    state = _initial_state(fused, 3, rng)
    upstream = [rng.standard_normal(o.shape).astype("float32") for o in _flat(*fused(x, state))]
    ours = _gradients(fused, x, state, upstream)
    theirs = _gradients(reference, x, state, upstream)
    assert all(g is not None for g in ours) and len(ours) == len(theirs)
    for mine, expected in zip(ours, theirs, strict=True):
        scale = np.abs(expected).max()
        np.testing.assert_allclose(mine, expected, atol=GRAD_RTOL * scale, rtol=0)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_graph_mode_time_major_and_single_step_sequences(cell, rng):
    """Inside `tf.function` with unknown batch and length, time-major, T=1."""
    fused, reference = _pair(cell, {}, rng, time_major=True)
    run = tf.function(lambda layer, x: _flat(*layer(x)), reduce_retracing=True)
    for steps in (1, 5):
        x = rng.standard_normal((steps, 2, 4)).astype("float32")
        for ours, theirs in zip(run(fused, x), run(reference, x), strict=True):
            np.testing.assert_allclose(ours, theirs, atol=TOL, rtol=0)


def test_inference_and_training_calls_give_the_same_outputs(rng):
    """`training=False` runs the lean forward loop; it equals the kept one."""
    fused, _ = _pair("lstm", {}, rng, num_layers=2)
    x = rng.standard_normal((2, 5, 4)).astype("float32")
    for ours, theirs in zip(_flat(*fused(x, training=False)), _flat(*fused(x, training=True)), strict=True):
        np.testing.assert_allclose(ours, theirs, atol=1e-6, rtol=0)


def test_mixed_float16_runs_fused_in_half_precision(rng):
    keras.mixed_precision.set_global_policy("mixed_float16")
    fused, reference = _pair("gru", {}, rng)
    x = rng.standard_normal((2, 5, 4)).astype("float32")
    ours, theirs = fused(x)[0], reference(x)[0]
    assert ours.dtype == theirs.dtype == "float16"
    np.testing.assert_allclose(ours, theirs, atol=1e-2)
