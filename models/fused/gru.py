"""The GRU over a whole sequence with hand-written BPTT, both variants
(equations in `models/cells/gru.py`; gate order z, r, h).

Forward keeps z, r, ĥ (and, reset-after, the recurrent candidate term
n_t = h_{t−1}·W_h + b'_h). With h_t = ĥ + z ⊙ (h_{t−1} − ĥ), backward per step:

    dz_pre = dh_t ⊙ (h_{t−1} − ĥ) ⊙ σ'(z)                 = dh_t ⊙ K_z
    dĥ_pre = dh_t ⊙ (1 − z) ⊙ φ'(ĥ)                       = dh_t ⊙ K_h

reset-after (torch, cuDNN):   ĥ = φ(x·U_h + b_h + r ⊙ n)

    dr_pre = dĥ_pre ⊙ n ⊙ σ'(r)                            = dh_t ⊙ K_r
    d(recurrent) = [dz_pre, dr_pre, dĥ_pre ⊙ r]
    dh_{t−1} = dh_t ⊙ z + d(recurrent)·Wᵀ

    so dW = Σ h_{t−1}ᵀ d(recurrent), db' = Σ d(recurrent), and the input
    projection's gradient is [dz_pre, dr_pre, dĥ_pre].

reset-before (Cho et al., 2014):   ĥ = φ(x·U_h + (r ⊙ h_{t−1})·W_h + b_h)

    d(r⊙h) = dĥ_pre·W_hᵀ
    dr_pre = d(r⊙h) ⊙ h_{t−1} ⊙ σ'(r)
    dh_{t−1} = dh_t ⊙ z + d(r⊙h) ⊙ r + dz_pre·W_zᵀ + dr_pre·W_rᵀ

    so dW_z, dW_r = Σ h_{t−1}ᵀ dz_pre, Σ h_{t−1}ᵀ dr_pre and
    dW_h = Σ (r ⊙ h_{t−1})ᵀ dĥ_pre, whole-sequence GEMMs after the loop.

The K factors depend only on what forward kept; each backward step computes
them ahead of the recurrence (see `bptt.py`). Forward's gate groups:
[z, r] | [h] reset-after, [z] | [r] then [h] reset-before; backward sends
each gate's gradient back through its own block of W (no concat per step).
"""

from __future__ import annotations

import tensorflow as tf

from rnnserve.models.fused import bptt
from rnnserve.models.fused.activations import forward_and_derivative


class FusedGRU:
    """Forward and backward of a GRU layer over `(T, B, F)` inputs.

    Args:
        reset_after: The cell's `reset_after`.
        activation: The cell's φ (a supported Keras activation).
        recurrent_activation: The cell's σ.

    Weights, in order: `kernel (F, 3H)`, `recurrent_kernel (H, 3H)`, `bias`
    (`(2, 3H)` if `reset_after`, else `(3H,)`). State: `h (B, H)`.

    Example:

    >>> gru = FusedGRU(True, keras.activations.tanh, keras.activations.sigmoid)
    >>> w = [tf.zeros((3, 6)), tf.zeros((2, 6)), tf.zeros((2, 6))]
    >>> (y, h), _ = gru.forward(tf.zeros((5, 4, 3)), [tf.zeros((4, 2))], w, keep=False)
    >>> y.shape
    TensorShape([5, 4, 2])
    """

    def __init__(self, reset_after, activation, recurrent_activation):
        self.reset_after = reset_after
        self.phi, self.dphi = forward_and_derivative(activation)
        self.sigma, self.dsigma = forward_and_derivative(recurrent_activation)

    def _sizes(self, units):
        return [2 * units, units] if self.reset_after else [units, units, units]

    def _input_bias(self, bias, units):
        """The input projection's bias; with reset-after the recurrent z, r
        biases only ever add to the input ones, so they are folded in."""
        if not self.reset_after:
            return bias
        return bias[0] + tf.concat([bias[1, : 2 * units], tf.zeros_like(bias[1, 2 * units :])], axis=0)

    # -- forward -----------------------------------------------------------

    def forward(self, x, states, weights, keep):
        """Runs the sequence; returns `((Y, h_T), saved)`: z, r, ĥ (and n),
        each `(T, B, H)`."""
        kernel, recurrent_kernel, bias = weights
        units = recurrent_kernel.shape[0]
        sizes = self._sizes(units)
        xp = bptt.input_projection(
            x, bptt.split_columns(kernel, sizes), bptt.split_columns(self._input_bias(bias, units), sizes)
        )
        w = bptt.split_columns(recurrent_kernel, sizes)
        phi, sigma = self.phi, self.sigma

        if self.reset_after:
            candidate_bias = bias[1, 2 * units :]

            def step(carry, inputs):
                h = carry[0]
                zr = sigma(inputs[0] + tf.matmul(h, w[0]))  # (B, 2H)
                n = tf.matmul(h, w[1]) + candidate_bias  # (B, H)
                z, r = zr[:, :units], zr[:, units:]
                h_hat = phi(inputs[1] + r * n)
                h = h_hat + z * (h - h_hat)
                return [h], ([h, z, r, h_hat, n] if keep else [h])

        else:

            def step(carry, inputs):
                h = carry[0]
                z = sigma(inputs[0] + tf.matmul(h, w[0]))
                r = sigma(inputs[1] + tf.matmul(h, w[1]))
                h_hat = phi(inputs[2] + tf.matmul(r * h, w[2]))
                h = h_hat + z * (h - h_hat)
                return [h], ([h, z, r, h_hat] if keep else [h])

        num_outputs = (5 if self.reset_after else 4) if keep else 1
        (h,), written = bptt.time_loop(step, xp, states, num_outputs)
        return (written[0].stack(), h), tuple(w.stack() for w in written[1:])

    # -- backward ----------------------------------------------------------

    def backward(self, x, states, weights, outputs, saved, upstream):
        """Hand-written BPTT: gradients of `(x, h_0, kernel, recurrent_kernel, bias)`."""
        kernel, recurrent_kernel, _ = weights
        units = recurrent_kernel.shape[0]
        gates = [units] * 3
        dy, dh_last = upstream
        h_prev = bptt.previous(outputs[0], states[0])
        w_t = [tf.transpose(w) for w in bptt.split_columns(recurrent_kernel, gates)]  # z, r, h: (H, H) each
        loop = self._loop_reset_after if self.reset_after else self._loop_reset_before
        dh0, dxp, drec, rec_inputs = loop(w_t, dy, dh_last, h_prev, saved)
        dx, dkernel, dbias = bptt.input_gradients(x, bptt.split_columns(kernel, gates), dxp)
        drecurrent = tf.concat(
            [bptt.sequence_matmul(a, d) for a, d in zip(rec_inputs, drec, strict=True)], axis=1
        )
        if self.reset_after:
            dbias = tf.stack([dbias, tf.concat([bptt.sequence_sum(d) for d in drec], axis=0)])  # (2, 3H)
        return [dx, dh0, dkernel, drecurrent, dbias]

    def _loop_reset_after(self, w_t, dy, dh_last, h_prev, saved):
        """Returns `(dh_0, per-gate dXP, per-gate dREC, their GEMM left factors)`."""
        dphi, dsigma = self.dphi, self.dsigma

        def step(carry, inputs):
            dy_t, z, r, h_hat, n, h_prev_t = inputs
            k_h = (1.0 - z) * dphi(h_hat)
            k_z = (h_prev_t - h_hat) * dsigma(z)
            k_r = k_h * n * dsigma(r)
            dh = carry[0] + dy_t
            dz, dr = dh * k_z, dh * k_r  # dz_pre, dr_pre
            dh_hat = dh * k_h
            dn = dh_hat * r
            dh_prev = tf.add_n([dh * z, tf.matmul(dz, w_t[0]), tf.matmul(dr, w_t[1]), tf.matmul(dn, w_t[2])])
            return [dh_prev], [dz, dr, dh_hat, dn]

        (dh0,), written = bptt.time_loop(step, [dy, *saved, h_prev], [dh_last], 4, reverse=True)
        dz, dr, dh_hat, dn = (w.stack() for w in written)
        return dh0, [dz, dr, dh_hat], [dz, dr, dn], [h_prev, h_prev, h_prev]

    def _loop_reset_before(self, w_t, dy, dh_last, h_prev, saved):
        """Returns `(dh_0, per-gate dXP, per-gate dREC, their GEMM left factors)`."""
        dphi, dsigma = self.dphi, self.dsigma

        def step(carry, inputs):
            dy_t, z, r, h_hat, h_prev_t = inputs
            k_z = (h_prev_t - h_hat) * dsigma(z)
            k_h = (1.0 - z) * dphi(h_hat)
            k_r = h_prev_t * dsigma(r)
            dh = carry[0] + dy_t
            dh_hat = dh * k_h
            drh = tf.matmul(dh_hat, w_t[2])  # d(r ⊙ h_{t−1}), (B, H)
            dz = dh * k_z
            dr = drh * k_r
            dh_prev = dh * z + drh * r + tf.matmul(dz, w_t[0]) + tf.matmul(dr, w_t[1])
            return [dh_prev], [dz, dr, dh_hat]

        (dh0,), written = bptt.time_loop(step, [dy, *saved, h_prev], [dh_last], 3, reverse=True)
        dz, dr, dh_hat = (w.stack() for w in written)
        r = saved[1]
        return dh0, [dz, dr, dh_hat], [dz, dr, dh_hat], [h_prev, h_prev, r * h_prev]
