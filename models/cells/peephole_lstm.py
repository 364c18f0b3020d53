"""The LSTM with diagonal peephole connections (Gers & Schmidhuber, 2000,
"Recurrent Nets that Time and Count").

The input and forget gates look at the previous cell state, the output gate
at the new one:

    i_t = σ(x_t·U_i + h_{t-1}·W_i + p_i ⊙ c_{t-1} + b_i)
    f_t = σ(x_t·U_f + h_{t-1}·W_f + p_f ⊙ c_{t-1} + b_f)
    a_t = φ(x_t·U_a + h_{t-1}·W_a + b_a)
    c_t = f_t ⊙ c_{t-1} + i_t ⊙ a_t
    o_t = σ(x_t·U_o + h_{t-1}·W_o + p_o ⊙ c_t + b_o)
    h_t = o_t ⊙ φ(c_t)

The weights are the LSTM's (gate order i, f, c, o) plus three vectors of
shape (units,) named as in TF 2's `PeepholeLSTMCell`:
`input_gate_peephole_weights`, `forget_gate_peephole_weights`,
`output_gate_peephole_weights`. torch has no such cell.
"""

from __future__ import annotations

import keras
from keras import ops

from rnnserve.models.cells.base import split_gates
from rnnserve.models.cells.lstm import LSTMCell

PEEPHOLE_WEIGHTS = (
    "input_gate_peephole_weights",
    "forget_gate_peephole_weights",
    "output_gate_peephole_weights",
)


@keras.saving.register_keras_serializable(package="rnnserve")
class PeepholeLSTMCell(LSTMCell):
    """One step of the peephole LSTM (equations in the module docstring).

    Args:
        units: Positive integer, dimensionality of h and c.
        **kwargs: The arguments of `LSTMCell`.

    Call arguments:
        inputs: `(B, input_dim)`; states: `[h_{t-1}, c_{t-1}]`, each
        `(B, units)`; training: whether dropout is applied.

    Returns:
        `(h_t, [h_t, c_t])`.

    Example:

    >>> layer = keras.layers.RNN(PeepholeLSTMCell(4), return_sequences=True)
    >>> tuple(layer(np.zeros((2, 5, 3), "float32")).shape)
    (2, 5, 4)
    """

    def build(self, input_shape):
        super().build(input_shape)
        for name in PEEPHOLE_WEIGHTS:
            setattr(
                self,
                name,
                self.add_weight(
                    shape=(self.units,),
                    name=name,
                    initializer=self.kernel_initializer,
                    regularizer=self.kernel_regularizer,
                    constraint=self.kernel_constraint,
                ),
            )

    def call(self, inputs, states, training=False):
        h_tm1, c_tm1 = states  # (B, H) each
        x, h_rec = self.dropped(inputs, h_tm1, training)
        z = self.input_projection(x) + ops.matmul(h_rec, self.recurrent_kernel)  # (B, 4H)
        z_i, z_f, z_a, z_o = split_gates(z, self)
        i = self.recurrent_activation(z_i + self.input_gate_peephole_weights * c_tm1)
        f = self.recurrent_activation(z_f + self.forget_gate_peephole_weights * c_tm1)
        c = f * c_tm1 + i * self.activation(z_a)
        o = self.recurrent_activation(z_o + self.output_gate_peephole_weights * c)
        h = o * self.activation(c)
        return h, [h, c]
