"""The gated recurrent unit (Cho et al., 2014, "Learning Phrase
Representations using RNN Encoder–Decoder for Statistical Machine
Translation"), in both of its variants.

Gate order z (update), r (reset), h (candidate), as in Keras:

    z_t = σ(x_t·U_z + b_z + h_{t-1}·W_z + b'_z)
    r_t = σ(x_t·U_r + b_r + h_{t-1}·W_r + b'_r)

reset_after=True (the variant of cuDNN and torch's `nn.GRU`, Keras'
default) resets after the matmul:

    ĥ_t = φ(x_t·U_h + b_h + r_t ⊙ (h_{t-1}·W_h + b'_h))

reset_after=False (the original paper) resets before it:

    ĥ_t = φ(x_t·U_h + (r_t ⊙ h_{t-1})·W_h + b_h)

and in both

    h_t = z_t ⊙ h_{t-1} + (1 − z_t) ⊙ ĥ_t

With reset_after the input bias b and the recurrent bias b' are separate
(they are not interchangeable once r multiplies b'_h), so `bias` has shape
(2, 3·units): row 0 is b, row 1 is b'. Without it `bias` is (3·units,).
torch's `nn.GRU` is the reset_after variant with gate order r, z, n.
"""

from __future__ import annotations

import keras
from keras import ops

from rnnserve.models.cells.base import GatedCell, split_gates

GRU_GATES = ("z", "r", "h")


@keras.saving.register_keras_serializable(package="rnnserve")
class GRUCell(GatedCell):
    """One step of the GRU (equations in the module docstring).

    Args:
        units: Positive integer, dimensionality of h.
        reset_after: Apply the reset gate after the recurrent matmul (torch
            and cuDNN) rather than before it (Cho et al., 2014).
            Default: `True`.
        **kwargs: `activation`, `recurrent_activation` and the arguments of
            `RecurrentCell`.

    Call arguments:
        inputs: `(B, input_dim)`; states: `[h_{t-1}]`, `(B, units)`;
        training: whether dropout is applied.

    Returns:
        `(h_t, [h_t])`.

    Example:

    >>> cell = GRUCell(4, reset_after=False)
    >>> tuple(keras.layers.RNN(cell)(np.zeros((2, 5, 3), "float32")).shape)
    (2, 4)
    >>> tuple(cell.bias.shape)
    (12,)
    """

    GATES = GRU_GATES
    STATES = ("h",)

    def __init__(self, units, reset_after=True, **kwargs):
        super().__init__(units, **kwargs)
        self.reset_after = reset_after

    def bias_shape(self):
        return (2, self.gate_units) if self.reset_after else (self.gate_units,)

    def input_projection(self, inputs):
        z = ops.matmul(inputs, self.kernel)
        if self.use_bias:
            z = z + (self.bias[0] if self.reset_after else self.bias)
        return z

    def call(self, inputs, states, training=False):
        h_tm1 = states[0]  # (B, H)
        x, h_rec = self.dropped(inputs, h_tm1, training)
        x_z, x_r, x_h = split_gates(self.input_projection(x), self)  # (B, H) each
        u = self.units
        if self.reset_after:
            inner = ops.matmul(h_rec, self.recurrent_kernel)  # (B, 3H)
            if self.use_bias:
                inner = inner + self.bias[1]
            rec_z, rec_r, rec_h = split_gates(inner, self)
        else:
            inner = ops.matmul(h_rec, self.recurrent_kernel[:, : 2 * u])  # (B, 2H)
            rec_z, rec_r = inner[:, :u], inner[:, u:]
        z = self.recurrent_activation(x_z + rec_z)
        r = self.recurrent_activation(x_r + rec_r)
        if self.reset_after:
            rec_h = r * rec_h
        else:
            rec_h = ops.matmul(r * h_rec, self.recurrent_kernel[:, 2 * u :])
        h_hat = self.activation(x_h + rec_h)
        h = z * h_tm1 + (1.0 - z) * h_hat
        return h, [h]

    def get_config(self):
        return {**super().get_config(), "reset_after": self.reset_after}
