"""Fused sequence implementations with hand-written BPTT: "the fused path".

A `keras.layers.RNN(cell)` runs one cell call per time step and lets autodiff
differentiate the while loop, which costs a small weight-gradient matmul per
step. A fused implementation here runs a whole layer-direction at once: the input
projection X·U is one GEMM for all T steps, the time loop holds only h·W and
the gate arithmetic, and a `tf.custom_gradient` implements backpropagation
through time explicitly, with the weight gradients Σ_t as whole-sequence
GEMMs after the backward loop (equations in `bptt.py` and each family's
module). The weights stay where they are, owned by the cells, in Keras
layout; a fused implementation only reads them.

| cell               | fused implementation                |
|--------------------|-------------------------------------|
| `SimpleRNNCell`    | `simple_rnn.FusedSimpleRNN`        |
| `LSTMCell`         | `lstm.FusedLSTM("lstm")`           |
| `PeepholeLSTMCell` | `lstm.FusedLSTM("peephole")`       |
| `CoupledLSTMCell`  | `lstm.FusedLSTM("coupled")`        |
| `GRUCell`          | `gru.FusedGRU(reset_after)`        |

Eligibility. `Recurrent(implementation="auto")` runs a layer-direction
through its fused implementation exactly when

1. its cell's class is one of the five above (not a subclass: a subclass may
   change `call`);
2. its `activation` (and `recurrent_activation`) is tanh, sigmoid, relu or
   linear;
3. no dropout inside the recurrence applies to this call: the cell's
   `dropout` and `recurrent_dropout` are 0, or `training` is not true
   (dropout masks apply only when `training` is true, as in Keras);
4. no mask is passed (masks need per-sequence lengths; they take the cell
   path, which has torch's packed-sequence semantics);

and through `keras.layers.RNN(cell)` otherwise. `implementation="fused"`
raises a `ValueError` naming the reason instead of falling back (a nonzero
`recurrent_dropout` already at construction); `implementation="cell"`
always takes the cell path. Reverse directions (the sequence read from its
end), initial states, stateful layers and every float dtype are supported;
under mixed precision the kernel computes in the compute dtype (float16),
like the cells.

Explicit inference (`training=False`, as in `predict` and exported
signatures) runs the forward loop alone, keeping nothing for backward; any
other call keeps what backward needs and gets the hand-written gradient.
(Differentiating a `training=False` call still works, through autodiff of
the forward loop, only slower.)
"""

from __future__ import annotations

import tensorflow as tf

from rnnserve.models.cells import CoupledLSTMCell, GRUCell, LSTMCell, PeepholeLSTMCell, SimpleRNNCell
from rnnserve.models.cells.peephole_lstm import PEEPHOLE_WEIGHTS
from rnnserve.models.fused import activations, bptt
from rnnserve.models.fused.gru import FusedGRU
from rnnserve.models.fused.lstm import FusedLSTM
from rnnserve.models.fused.simple_rnn import FusedSimpleRNN

IMPLEMENTATIONS = ("auto", "fused", "cell")

# Cell class → its fused sequence implementation, built from the cell.
FUSED = {
    SimpleRNNCell: lambda cell: FusedSimpleRNN(cell.activation),
    LSTMCell: lambda cell: FusedLSTM("lstm", cell.activation, cell.recurrent_activation),
    PeepholeLSTMCell: lambda cell: FusedLSTM("peephole", cell.activation, cell.recurrent_activation),
    CoupledLSTMCell: lambda cell: FusedLSTM("coupled", cell.activation, cell.recurrent_activation),
    GRUCell: lambda cell: FusedGRU(cell.reset_after, cell.activation, cell.recurrent_activation),
}


def static_ineligibility(cell):
    """Why `cell` can never take the fused path, or `None` if it can.

    Example:

    >>> static_ineligibility(LSTMCell(4, recurrent_activation="hard_sigmoid"))
    "its recurrent_activation 'hard_sigmoid' is not one of tanh, sigmoid, relu, linear"
    """
    if type(cell) not in FUSED:
        return f"{type(cell).__name__} has no fused kernel"
    for name in ("activation", "recurrent_activation"):
        function = getattr(cell, name, None)
        if function is not None and not activations.supported(function):
            label = getattr(function, "__name__", repr(function))
            return f"its {name} {label!r} is not one of tanh, sigmoid, relu, linear"
    return None


def call_ineligibility(cell, mask=None, training=None):
    """Why this call of `cell` cannot take the fused path, or `None`.

    Args:
        cell: A cell of `models.cells`.
        mask: The call's mask, or `None`.
        training: The call's `training` (dropout applies only when true).
    """
    reason = static_ineligibility(cell)
    if reason:
        return reason
    if mask is not None:
        return "a mask was passed"
    training_may_be_true = training is not None and not (isinstance(training, bool) and not training)
    if training_may_be_true and (cell.dropout > 0.0 or cell.recurrent_dropout > 0.0):
        return "its dropout or recurrent_dropout applies in training"
    return None


def _weights(cell, dtype):
    """The tensors a kernel takes, read from the cell's variables, as `dtype`."""
    bias = cell.bias if cell.use_bias else tf.zeros(cell.bias_shape(), dtype)
    variables = [cell.kernel, cell.recurrent_kernel, bias]
    if type(cell) is PeepholeLSTMCell:
        variables += [getattr(cell, name) for name in PEEPHOLE_WEIGHTS]
    return [tf.cast(tf.convert_to_tensor(v), dtype) for v in variables]


def run_fused(cell, inputs, initial_state=None, reverse=False, training=None):
    """Runs `cell` over a whole sequence with its fused kernel.

    Args:
        cell: An eligible cell (see `call_ineligibility`), built.
        inputs: `(B, T, F)`.
        initial_state: List of `(B, H)` states (h, or h and c), or `None`
            for zeros.
        reverse: Read the sequence from its end (a reverse direction);
            outputs stay in input time order.
        training: `False` runs the forward loop only (no gradient kept).

    Returns:
        `(outputs (B, T, H), [final states (B, H)])`, equal to
        `keras.layers.RNN(cell, return_sequences=True, return_state=True,
        go_backwards=reverse)` (outputs flipped back when `reverse`).

    Example:

    >>> cell = LSTMCell(4)
    >>> cell.build((None, 3))
    >>> outputs, (h, c) = run_fused(cell, tf.zeros((2, 5, 3)))
    >>> outputs.shape, h.shape
    (TensorShape([2, 5, 4]), TensorShape([2, 4]))
    """
    dtype = inputs.dtype
    x = tf.transpose(inputs, (1, 0, 2))  # (T, B, F)
    if reverse:
        x = tf.reverse(x, axis=[0])
    if initial_state is None:
        zeros = tf.zeros(tf.stack([tf.shape(inputs)[0], cell.units]), dtype)
        states = [zeros] * len(cell.state_size)
    else:
        states = [tf.cast(s, dtype) for s in initial_state]
    fused = FUSED[type(cell)](cell)
    weights = _weights(cell, dtype)
    if isinstance(training, bool) and not training:
        outputs, _ = fused.forward(x, states, weights, keep=False)
    else:
        outputs = bptt.with_bptt(fused, x, states, weights)
    y, *final = outputs  # (T, B, H)
    if reverse:
        y = tf.reverse(y, axis=[0])
    y = tf.transpose(y, (1, 0, 2))  # (B, T, H)
    y.set_shape(inputs.shape[:2].concatenate([cell.units]))
    for state in final:
        state.set_shape([inputs.shape[0], cell.units])
    return y, list(final)


__all__ = [
    "IMPLEMENTATIONS",
    "FUSED",
    "call_ineligibility",
    "run_fused",
    "static_ineligibility",
]
