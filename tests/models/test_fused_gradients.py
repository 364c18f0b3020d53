"""The hand-written BPTT of every kernel equals central finite differences in
float64, for the inputs, the initial states and every weight (an oracle
independent of both the kernels and TF's autodiff)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from rnnserve.models.cells import CELLS
from rnnserve.models.fused import FUSED, bptt

# STEPS covers both of `time_loop`'s loops: one unrolled iteration and a
# remainder of two steps run one at a time.
STEPS, BATCH, FEATURES, UNITS = bptt.UNROLL + 2, 2, 3, 3

# (cell name, cell kwargs); relu is left out: its kink makes differences
# meaningless at points where a pre-activation is near zero.
VARIANTS = {
    "rnn": ("rnn", {}),
    "lstm": ("lstm", {}),
    "peephole_lstm": ("peephole_lstm", {}),
    "coupled_lstm": ("coupled_lstm", {}),
    "gru_reset_after": ("gru", {}),
    "gru_reset_before": ("gru", {"reset_after": False}),
}


def _kernel_and_weights(name, kwargs, rng):
    """A kernel, and float64 weight tensors shaped like its cell's weights."""
    cell = CELLS[name](UNITS, dtype="float64", **kwargs)
    cell.build((None, FEATURES))
    weights = [tf.constant(rng.uniform(-0.8, 0.8, w.shape)) for w in cell.weights]
    states = [tf.constant(rng.uniform(-0.5, 0.5, (BATCH, UNITS))) for _ in cell.state_size]
    return FUSED[type(cell)](cell), states, weights


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_bptt_equals_finite_differences_in_float64(variant, rng):
    """For each argument in turn (x, h_0, c_0, each weight), the gradient's
    component along a random direction v equals the central difference
    (L(θ + εv) − L(θ − εv)) / 2ε of a random linear loss of all outputs."""
    name, kwargs = VARIANTS[variant]
    kernel, states, weights = _kernel_and_weights(name, kwargs, rng)
    x = tf.constant(rng.standard_normal((STEPS, BATCH, FEATURES)))
    arguments = [x, *states, *weights]
    upstream = [tf.constant(rng.standard_normal((STEPS, BATCH, UNITS)))] + [
        tf.constant(rng.standard_normal((BATCH, UNITS))) for _ in states
    ]
    num_states = len(states)

    @tf.function  # one graph for every evaluation
    def loss(arguments):
        x, tensors = arguments[0], arguments[1:]
        outputs = bptt.with_bptt(kernel, x, tensors[:num_states], tensors[num_states:])
        return sum(tf.reduce_sum(o * u) for o, u in zip(outputs, upstream, strict=True))

    with tf.GradientTape() as tape:
        tape.watch(arguments)
        value = loss(arguments)
    gradients = tape.gradient(value, arguments)
    eps = 1e-6
    # The difference quotient's own rounding error: a few ulps of L, over 2ε.
    rounding = 4 * np.finfo(np.float64).eps * abs(float(value)) / (2 * eps)
    for index, (argument, gradient) in enumerate(zip(arguments, gradients, strict=True)):
        direction = rng.standard_normal(argument.shape)
        moved = [list(arguments), list(arguments)]
        moved[0][index] = argument + eps * direction
        moved[1][index] = argument - eps * direction
        difference = (loss(moved[0]) - loss(moved[1])).numpy() / (2 * eps)
        np.testing.assert_allclose(
            np.sum(gradient.numpy() * direction),
            difference,
            rtol=1e-7,
            atol=rounding,
            err_msg=f"argument {index}",
        )


def test_split_matmul_equals_one_matmul(rng):
    a = tf.constant(rng.standard_normal((5, 7)))
    m = tf.constant(rng.standard_normal((7, 11)))
    for parts in (1, 2, 3, 4):
        np.testing.assert_allclose(bptt.SplitMatmul(m, parts=parts)(a), a @ m, atol=1e-12)
        np.testing.assert_allclose(
            bptt.SplitMatmul(tf.transpose(m), transpose=True, parts=parts)(a), a @ m, atol=1e-12
        )


@pytest.mark.parametrize("reverse", [False, True])
def test_time_loop_visits_every_step_once_in_order(reverse, rng):
    """A running sum through `time_loop` equals NumPy's cumulative sum, for
    lengths below, at and past multiples of `UNROLL`, with the length known
    when traced and unknown (a `tf.function` with `T = None`)."""

    def running_sum(xs):
        def step(carry, inputs):
            total = carry[0] + inputs[0]
            return [total], [total, inputs[0]]

        (total,), (sums, seen) = bptt.time_loop(step, [xs], [tf.zeros_like(xs[0])], 2, reverse=reverse)
        return total, sums.stack(), seen.stack()

    unknown_length = tf.function(running_sum, input_signature=[tf.TensorSpec((None, 2), tf.float64)])
    for steps in range(1, 2 * bptt.UNROLL + 2):
        xs = rng.standard_normal((steps, 2))
        order = xs[::-1] if reverse else xs
        expected = np.cumsum(order, axis=0)
        expected = expected[::-1] if reverse else expected
        for total, sums, seen in (running_sum(tf.constant(xs)), unknown_length(tf.constant(xs))):
            np.testing.assert_allclose(sums, expected, atol=1e-12, err_msg=f"T={steps}")
            np.testing.assert_allclose(seen, xs, atol=0, err_msg=f"T={steps}")
            np.testing.assert_allclose(total, order.sum(axis=0), atol=1e-12, err_msg=f"T={steps}")


def test_kernels_exist_for_exactly_the_five_cells():
    assert set(FUSED) == set(CELLS.values())
    assert keras.activations.tanh is CELLS["lstm"](2).activation
