"""The coupled input-forget gate LSTM (CIFG; Greff et al., 2017, "LSTM: A
Search Space Odyssey"): the forget gate is tied to the input gate,

    i_t = σ(x_t·U_i + h_{t-1}·W_i + b_i)
    f_t = 1 − i_t
    a_t = φ(x_t·U_a + h_{t-1}·W_a + b_a)
    c_t = f_t ⊙ c_{t-1} + i_t ⊙ a_t
    o_t = σ(x_t·U_o + h_{t-1}·W_o + b_o)
    h_t = o_t ⊙ φ(c_t)

Three gates in the order i, c (the candidate a), o: `kernel` is
(input_dim, 3·units), `recurrent_kernel` (units, 3·units), `bias` (3·units,).
torch has no such cell.
"""

from __future__ import annotations

import keras
from keras import ops

from rnnserve.models.cells.base import GatedCell, split_gates

COUPLED_LSTM_GATES = ("i", "c", "o")


@keras.saving.register_keras_serializable(package="rnnserve")
class CoupledLSTMCell(GatedCell):
    """One step of the coupled input-forget LSTM (equations above).

    Args:
        units: Positive integer, dimensionality of h and c.
        **kwargs: `activation`, `recurrent_activation` and the arguments of
            `RecurrentCell`.

    Call arguments:
        inputs: `(B, input_dim)`; states: `[h_{t-1}, c_{t-1}]`, each
        `(B, units)`; training: whether dropout is applied.

    Returns:
        `(h_t, [h_t, c_t])`.

    Example:

    >>> layer = keras.layers.RNN(CoupledLSTMCell(4))
    >>> tuple(layer(np.zeros((2, 5, 3), "float32")).shape)
    (2, 4)
    """

    GATES = COUPLED_LSTM_GATES
    STATES = ("h", "c")

    def call(self, inputs, states, training=False):
        h_tm1, c_tm1 = states  # (B, H) each
        x, h_rec = self.dropped(inputs, h_tm1, training)
        z = self.input_projection(x) + ops.matmul(h_rec, self.recurrent_kernel)  # (B, 3H)
        z_i, z_a, z_o = split_gates(z, self)
        i = self.recurrent_activation(z_i)
        c = (1.0 - i) * c_tm1 + i * self.activation(z_a)
        o = self.recurrent_activation(z_o)
        h = o * self.activation(c)
        return h, [h, c]
