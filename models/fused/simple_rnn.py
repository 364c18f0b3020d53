"""The Elman RNN over a whole sequence with hand-written BPTT.

    forward   h_t = φ(x_t·U + b + h_{t−1}·W)
    backward  dz_t = (dy_t + dh_t) ⊙ φ'(h_t),   dh_{t−1} = dz_t·Wᵀ
              dW = Σ h_{t−1}ᵀ dz_t,  dU = Σ x_tᵀ dz_t,  db = Σ dz_t

φ' is written from the output (`activations.py`), so forward keeps nothing
but the outputs themselves. With a single gate there are no gate groups;
for large H the recurrent matmul is split in column halves instead.
"""

from __future__ import annotations

from rnnserve.models.fused import bptt
from rnnserve.models.fused.activations import forward_and_derivative

# Split the recurrent matmul in two from this H on (below, the concat that
# joins the halves costs more than the second core saves).
SPLIT_FROM_UNITS = 512


class FusedSimpleRNN:
    """Forward and backward of an Elman layer over `(T, B, F)` inputs.

    Args:
        activation: The cell's φ (a supported Keras activation).

    Weights, in order: `kernel (F, H)`, `recurrent_kernel (H, H)`,
    `bias (H,)`. State: `h (B, H)`.

    Example:

    >>> rnn = FusedSimpleRNN(keras.activations.tanh)
    >>> w = [tf.zeros((3, 2)), tf.zeros((2, 2)), tf.zeros((2,))]
    >>> (y, h), _ = rnn.forward(tf.zeros((5, 4, 3)), [tf.zeros((4, 2))], w, keep=False)
    >>> y.shape
    TensorShape([5, 4, 2])
    """

    def __init__(self, activation):
        self.phi, self.dphi = forward_and_derivative(activation)

    @staticmethod
    def _parts(recurrent_kernel):
        return 2 if recurrent_kernel.shape[0] >= SPLIT_FROM_UNITS else 1

    def forward(self, x, states, weights, keep):
        """Runs the sequence; returns `((Y, h_T), ())`: Y is all backward needs."""
        kernel, recurrent_kernel, bias = weights
        recurrent = bptt.SplitMatmul(recurrent_kernel, parts=self._parts(recurrent_kernel))
        phi = self.phi

        def step(carry, inputs):
            h = phi(inputs[0] + recurrent(carry[0]))  # (B, H)
            return [h], [h]

        (h,), (y,) = bptt.time_loop(step, bptt.input_projection(x, [kernel], [bias]), states, 1)
        return (y.stack(), h), ()

    def backward(self, x, states, weights, outputs, saved, upstream):
        """Hand-written BPTT: gradients of `(x, h_0, kernel, recurrent_kernel, bias)`."""
        kernel, recurrent_kernel, _ = weights
        y = outputs[0]
        dy, dh_last = upstream
        recurrent_t = bptt.SplitMatmul(recurrent_kernel, transpose=True, parts=self._parts(recurrent_kernel))
        dphi = self.dphi

        def step(carry, inputs):
            dy_t, y_t = inputs
            dz = (carry[0] + dy_t) * dphi(y_t)  # (B, H)
            return [recurrent_t(dz)], [dz]

        (dh0,), (dz,) = bptt.time_loop(step, [dy, y], [dh_last], 1, reverse=True)
        dz = dz.stack()
        dx, dkernel, dbias = bptt.input_gradients(x, [kernel], [dz])
        return [dx, dh0, dkernel, bptt.sequence_matmul(bptt.previous(y, states[0]), dz), dbias]
