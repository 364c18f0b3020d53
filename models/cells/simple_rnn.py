"""The Elman recurrent cell (Elman, 1990, "Finding Structure in Time"):

    h_t = φ(x_t·U + h_{t-1}·W + b)

φ is `activation` (tanh by default; torch's `nonlinearity="relu"` is
`activation="relu"`). One gate, so `kernel` is (input_dim, units),
`recurrent_kernel` (units, units) and `bias` (units,). torch's `nn.RNN` keeps
two biases, b_ih + b_hh; they only ever appear summed, so this cell keeps one.
"""

from __future__ import annotations

import keras
from keras import ops

from rnnserve.models.cells.base import RecurrentCell

SIMPLE_RNN_GATES = ("h",)


@keras.saving.register_keras_serializable(package="rnnserve")
class SimpleRNNCell(RecurrentCell):
    """One step of the Elman RNN: h_t = φ(x_t·U + h_{t-1}·W + b).

    Args:
        units: Positive integer, dimensionality of h.
        activation: φ. Default: `"tanh"`.
        **kwargs: Initializers, regularizers, constraints, `use_bias`,
            `dropout`, `recurrent_dropout`, `seed` (see `RecurrentCell`).

    Call arguments:
        inputs: `(B, input_dim)`, the input x_t.
        states: `[h_{t-1}]`, one tensor `(B, units)`.
        training: Whether dropout is applied.

    Returns:
        `(h_t, [h_t])`.

    Example:

    >>> layer = keras.layers.RNN(SimpleRNNCell(4), return_sequences=True)
    >>> tuple(layer(np.zeros((2, 5, 3), "float32")).shape)
    (2, 5, 4)
    """

    GATES = SIMPLE_RNN_GATES
    STATES = ("h",)

    def call(self, inputs, states, training=False):
        h_tm1 = states[0]  # (B, H)
        x, h_rec = self.dropped(inputs, h_tm1, training)
        z = self.input_projection(x) + ops.matmul(h_rec, self.recurrent_kernel)
        h = self.activation(z)  # (B, H)
        return h, [h]
