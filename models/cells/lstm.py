"""The long short-term memory cell (Hochreiter & Schmidhuber, 1997, "Long
Short-Term Memory") with the forget gate of Gers, Schmidhuber & Cummins
(2000, "Learning to Forget"):

    f_t = σ(x_t·U_f + h_{t-1}·W_f + b_f)         forget gate
    i_t = σ(x_t·U_i + h_{t-1}·W_i + b_i)         input gate
    a_t = φ(x_t·U_a + h_{t-1}·W_a + b_a)         candidate
    c_t = f_t ⊙ c_{t-1} + i_t ⊙ a_t              cell state
    o_t = σ(x_t·U_o + h_{t-1}·W_o + b_o)         output gate
    h_t = o_t ⊙ φ(c_t)                           hidden state

σ is `recurrent_activation`, φ is `activation`. The four gates sit side by
side in Keras' order i, f, c (the candidate a), o — also torch's order — so
`kernel` is (input_dim, 4·units), `recurrent_kernel` (units, 4·units) and
`bias` (4·units,).
"""

from __future__ import annotations

import keras
from keras import initializers, ops

from rnnserve.models.cells.base import GatedCell, split_gates

LSTM_GATES = ("i", "f", "c", "o")


@keras.saving.register_keras_serializable(package="rnnserve")
class LSTMCell(GatedCell):
    """One step of the LSTM (equations in the module docstring).

    Args:
        units: Positive integer, dimensionality of h and c.
        activation: φ of the candidate and of the output. Default: `"tanh"`.
        recurrent_activation: σ of the gates. Default: `"sigmoid"`.
        unit_forget_bias: Add 1 to the forget gate's bias at initialization
            (Jozefowicz et al., 2015). Default: `True`.
        **kwargs: Initializers, regularizers, constraints, `use_bias`,
            `dropout`, `recurrent_dropout`, `seed` (see `RecurrentCell`).

    Call arguments:
        inputs: `(B, input_dim)`, the input x_t.
        states: `[h_{t-1}, c_{t-1}]`, each `(B, units)`.
        training: Whether dropout is applied.

    Returns:
        `(h_t, [h_t, c_t])`.

    Example:

    >>> layer = keras.layers.RNN(LSTMCell(4), return_state=True)
    >>> h, h_again, c = layer(np.zeros((2, 5, 3), "float32"))
    >>> tuple(h.shape), tuple(c.shape)
    ((2, 4), (2, 4))
    """

    GATES = LSTM_GATES
    STATES = ("h", "c")

    def __init__(self, units, unit_forget_bias=True, **kwargs):
        super().__init__(units, **kwargs)
        self.unit_forget_bias = unit_forget_bias

    def initial_bias(self, shape, dtype=None):
        bias = self.bias_initializer(shape, dtype=dtype)
        if not self.unit_forget_bias or "f" not in self.GATES:
            return bias
        f = self.GATES.index("f") * self.units
        ones = initializers.get("ones")((self.units,), dtype=dtype)
        return ops.concatenate([bias[:f], bias[f : f + self.units] + ones, bias[f + self.units :]])

    def call(self, inputs, states, training=False):
        h_tm1, c_tm1 = states  # (B, H) each
        x, h_rec = self.dropped(inputs, h_tm1, training)
        z = self.input_projection(x) + ops.matmul(h_rec, self.recurrent_kernel)  # (B, 4H)
        z_i, z_f, z_a, z_o = split_gates(z, self)
        i = self.recurrent_activation(z_i)
        f = self.recurrent_activation(z_f)
        c = f * c_tm1 + i * self.activation(z_a)
        o = self.recurrent_activation(z_o)
        h = o * self.activation(c)
        return h, [h, c]

    def get_config(self):
        return {**super().get_config(), "unit_forget_bias": self.unit_forget_bias}
