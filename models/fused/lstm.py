"""The LSTM family over a whole sequence, with hand-written BPTT: the plain
LSTM, the peephole LSTM and the coupled input-forget LSTM share one backward
recurrence; only their forward steps differ (equations in
`models/cells/lstm.py`, `peephole_lstm.py`, `coupled_lstm.py`).

Backward, with primes the derivatives written from outputs
(`activations.py`), φ(c_t) kept by forward, and dh_t the output's gradient
plus what step t+1 sends back (dc_t likewise):

    dz_o   = dh_t ⊙ φ(c_t) ⊙ σ'(o)                        = dh_t ⊙ K_o
    dc_t  += dh_t ⊙ o ⊙ φ'(c_t)  (+ dz_o ⊙ p_o)            = dh_t ⊙ K_c
    dz_i   = dc_t ⊙ a ⊙ σ'(i)          coupled: (a − c_{t−1}) ⊙ σ'(i)
    dz_f   = dc_t ⊙ c_{t−1} ⊙ σ'(f)    (no forget gate when coupled)
    dz_a   = dc_t ⊙ i ⊙ φ'(a)
    dh_{t−1} = Σ_g dz_g·W_gᵀ
    dc_{t−1} = dc_t ⊙ f  (+ dz_i ⊙ p_i + dz_f ⊙ p_f)       = dc_t ⊙ K_f     (f = 1 − i when coupled)

Every factor K (and a σ'(i), …) depends only on what forward kept, not on
the recurrence, so the loop computes it ahead (see `bptt.py`); the
recurrence itself is a few multiply-adds and the matmuls per step. Forward
runs the gates in two groups, [i, f] and [c, o] ([i] and [c, o] when
coupled), each with its own matmul; backward has one matmul per gate, since
joining the per-gate dz into groups would take a concat per step (see
`bptt.py`). The peephole gradients are whole-sequence reductions:
dp_i = Σ dz_i ⊙ c_{t−1}, dp_f = Σ dz_f ⊙ c_{t−1}, dp_o = Σ dz_o ⊙ c_t.
"""

from __future__ import annotations

import tensorflow as tf

from rnnserve.models.fused import bptt
from rnnserve.models.fused.activations import forward_and_derivative

VARIANTS = ("lstm", "peephole", "coupled")


class FusedLSTM:
    """Forward and backward of an LSTM-family layer over `(T, B, F)` inputs.

    Args:
        variant: `"lstm"`, `"peephole"` or `"coupled"`.
        activation: The cell's φ (a supported Keras activation).
        recurrent_activation: The cell's σ.

    Weights, in order: `kernel (F, G·H)`, `recurrent_kernel (H, G·H)`,
    `bias (G·H,)`, and for the peephole variant `p_i, p_f, p_o (H,)`; G is 4,
    or 3 when coupled. States: `h, c`, each `(B, H)`.

    Example:

    >>> lstm = FusedLSTM("lstm", keras.activations.tanh, keras.activations.sigmoid)
    >>> x, w = tf.zeros((5, 2, 3)), [tf.zeros((3, 8)), tf.zeros((2, 8)), tf.zeros((8,))]
    >>> (y, h, c), _ = lstm.forward(x, [tf.zeros((2, 2))] * 2, w, keep=False)
    >>> y.shape
    TensorShape([5, 2, 2])
    """

    def __init__(self, variant, activation, recurrent_activation):
        if variant not in VARIANTS:
            raise ValueError(f"Unknown LSTM variant {variant!r}; expected one of {VARIANTS}.")
        self.variant = variant
        self.coupled = variant == "coupled"
        self.phi, self.dphi = forward_and_derivative(activation)
        self.sigma, self.dsigma = forward_and_derivative(recurrent_activation)

    def _sizes(self, units):
        """Column sizes of the two gate groups: [i, f] | [c, o] or [i] | [c, o]."""
        return [units if self.coupled else 2 * units, 2 * units]

    # -- forward -----------------------------------------------------------

    def forward(self, x, states, weights, keep):
        """Runs the sequence; returns `((Y, h_T, c_T), saved)`.

        `saved` holds, when `keep`, the per-step gates i, f (not when
        coupled), a, o, then φ(c_t) and c_{t−1}, each `(T, B, H)`. (Handing
        backward the `TensorArray`s instead would save the stacking copies,
        but a SavedModel cannot serialize a gradient function that captures
        them.)
        """
        kernel, recurrent_kernel, bias, *peepholes = weights
        units = recurrent_kernel.shape[0]
        sizes = self._sizes(units)
        xp = bptt.input_projection(
            x, bptt.split_columns(kernel, sizes), bptt.split_columns(bias, sizes)
        )  # [(T, B, 2H or H), (T, B, 2H)]
        w_first, w_second = bptt.split_columns(recurrent_kernel, sizes)
        phi, sigma, variant = self.phi, self.sigma, self.variant

        def step(carry, inputs):
            h, c_prev = carry
            z_first = inputs[0] + tf.matmul(h, w_first)  # (B, 2H): i, f  (coupled: (B, H): i)
            z_second = inputs[1] + tf.matmul(h, w_second)  # (B, 2H): c, o
            a = phi(z_second[:, :units])
            z_o = z_second[:, units:]
            if variant == "peephole":
                p_i, p_f, p_o = peepholes
                i = sigma(z_first[:, :units] + p_i * c_prev)
                f = sigma(z_first[:, units:] + p_f * c_prev)
                c = f * c_prev + i * a
                o = sigma(z_o + p_o * c)
            elif variant == "coupled":
                i = sigma(z_first)
                c = c_prev + i * (a - c_prev)  # (1 − i) c_{t−1} + i a
                o = sigma(z_o)
            else:
                s = sigma(z_first)
                i, f = s[:, :units], s[:, units:]
                c = f * c_prev + i * a
                o = sigma(z_o)
            tc = phi(c)
            h = o * tc  # (B, H)
            if not keep:
                return [h, c], [h]
            gates = [i, a, o] if variant == "coupled" else [i, f, a, o]
            return [h, c], [h, *gates, tc, c_prev]

        num_outputs = (6 if self.coupled else 7) if keep else 1
        (h, c), written = bptt.time_loop(step, xp, states, num_outputs)
        return (written[0].stack(), h, c), tuple(w.stack() for w in written[1:])

    # -- backward ----------------------------------------------------------

    def _factors(self, peepholes):
        """Per-step backward factors from what forward kept: `(g_cell, k_o,
        k_c, k_f)`, where `g_cell` lists the factors of the gates fed by the
        cell state, in gate order ([i, f, c] or [i, c] when coupled):
        dz_g = dc ⊙ g for those, and dz_o = dh ⊙ k_o."""
        dphi, dsigma, variant = self.dphi, self.dsigma, self.variant

        def factors(kept):
            if variant == "coupled":
                i, a, o, tc, c_prev = kept
                g_i = (a - c_prev) * dsigma(i)
                g_cell, k_f = [g_i, i * dphi(a)], 1.0 - i
            else:
                i, f, a, o, tc, c_prev = kept
                g_i, g_f = a * dsigma(i), c_prev * dsigma(f)
                g_cell, k_f = [g_i, g_f, i * dphi(a)], f
            k_o = tc * dsigma(o)
            k_c = o * dphi(tc)
            if variant == "peephole":
                p_i, p_f, p_o = peepholes
                k_c = k_c + k_o * p_o
                k_f = f + g_i * p_i + g_f * p_f
            return g_cell, k_o, k_c, k_f

        return factors

    def backward(self, x, states, weights, outputs, saved, upstream):
        """Hand-written BPTT: gradients of `(x, h_0, c_0, *weights)`."""
        kernel, recurrent_kernel, bias, *peepholes = weights
        units = recurrent_kernel.shape[0]
        gates = [units] * (3 if self.coupled else 4)
        dy, dh_last, dc_last = upstream
        w_t = [tf.transpose(w) for w in bptt.split_columns(recurrent_kernel, gates)]  # G × (H, H)
        factors = self._factors(peepholes)

        def step(carry, inputs):
            dh, dc = carry
            dy_t, *kept = inputs
            g_cell, k_o, k_c, k_f = factors(kept)
            dh = dh + dy_t
            dc = dc + dh * k_c
            dz = [dc * g for g in g_cell] + [dh * k_o]  # G × (B, H), gate order
            dh_prev = tf.add_n([tf.matmul(d, w) for d, w in zip(dz, w_t, strict=True)])
            return [dh_prev, dc * k_f], dz

        (dh0, dc0), written = bptt.time_loop(step, [dy, *saved], [dh_last, dc_last], len(gates), reverse=True)
        dz = [w.stack() for w in written]  # G × (T, B, H)
        dx, dkernel, dbias = bptt.input_gradients(x, bptt.split_columns(kernel, gates), dz)
        h_prev = bptt.previous(outputs[0], states[0])
        drecurrent = tf.concat([bptt.sequence_matmul(h_prev, d) for d in dz], axis=1)  # (H, G·H)
        grads = [dx, dh0, dc0, dkernel, drecurrent, dbias]
        if self.variant == "peephole":
            c_prev = saved[-1]
            c = tf.concat([c_prev[1:], outputs[2][None]], axis=0)
            dz_i, dz_f, _, dz_o = dz
            grads += [
                bptt.sequence_sum(dz_i * c_prev),
                bptt.sequence_sum(dz_f * c_prev),
                bptt.sequence_sum(dz_o * c),
            ]
        return grads
