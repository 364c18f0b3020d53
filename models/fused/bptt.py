"""The machinery every fused kernel shares: time loops, gate-grouped
matmuls, the whole-sequence GEMMs, and the `tf.custom_gradient` that ties a
family's hand-written forward and backward together.

Backpropagation through time for a recurrence h_t = cell(x_t·U + b, h_{t−1}·W)
over a whole sequence (Werbos, 1990, "Backpropagation through time: what
it does and how to do it"):

    forward   XP = X·U + b                   one GEMM, (T·B, F)·(F, G·H)
              for t = 1..T: z_t = XP_t + h_{t−1}·W;  gates, h_t, c_t    kept
    backward  for t = T..1: dz_t from dh_t (and dc_t);
                            dh_{t−1} = dz_t·Wᵀ (+ elementwise terms)
              dW = Σ_t h_{t−1}ᵀ·dz_t         one GEMM, (H, T·B)·(T·B, G·H)
              dU = Σ_t x_tᵀ·dz_t,  db = Σ_t dz_t,  dX = dZ·Uᵀ   whole sequence

so the time loops hold only the recurrent matmul and the gate arithmetic;
every product that does not feed the recurrence is one large GEMM outside
them. Everything here is standard TF ops (`tf.while_loop`, `TensorArray`,
`MatMul`), so graphs that use it save, export and load anywhere TF does.

How the loops are made fast on a few CPU cores (each rule measured A/B;
BENCHMARKS.md, "Training and inference throughput", says what limits the
loops and what the rules gain):

- Gate groups. In forward, the G gate blocks of U, W and b are cut into
  groups of columns (LSTM: [i, f] and [c, o]) with one matmul each. The
  groups are independent ops, so TF's executor runs them on different
  cores, and each group's activations follow its own matmul without a
  concat (a concat joining two parallel matmuls costs more than it saves).
- No concat in a backward step. Backward computes each gate's dz as its
  own (B, H) tensor and sends it back through that gate's block of W, one
  matmul per gate, summed. A concat of (B, H) pieces inside a loop costs
  as much as the matmul it would feed (TF shards the copy over the thread
  pool and waits for a thread busy with a matmul); only at the smallest
  sizes (H = 64, B = 1) do the extra small matmuls cost more than the
  concats saved. The whole-sequence GEMMs are done per gate (or group)
  too, and only the small (·, G·H) weight gradients are concatenated.
- Unrolled loops. A loop iteration runs `UNROLL` time steps: the loop's
  control ops (several per carried value) are paid once per `UNROLL`.
- Per-step backward factors. Each backward step first turns what forward
  kept (gates, c_t) into the factors of its dz, inside the loop, rather
  than as whole-sequence tensors before it: they do not depend on the
  recurrence, so they stay off its critical path, and a dozen passes over
  (T, B, H) arrays disappear.
- Sequences are read with `s[t]` (a zero-copy slice of a contiguous
  tensor), written through `TensorArray`s.
"""

from __future__ import annotations

import tensorflow as tf

# Steps of a time loop that may be in flight at once: the recurrence
# serialises the steps anyway, but the per-step work that does not depend
# on it (reads, backward factors) may start early. Any value from 1 to 32
# measures the same on 2 cores.
PARALLEL_ITERATIONS = 8
# Time steps per loop iteration (`time_loop`): the loop's control ops are
# paid once per UNROLL steps. 4 is clearly faster than 1 or 2, most at small
# B or H where a step is mostly overhead; 8 gains no more than noise for a
# larger graph (BENCHMARKS.md has the numbers).
UNROLL = 4


def split_columns(tensor, sizes):
    """Splits the last axis of `tensor` into consecutive blocks of `sizes`."""
    if len(sizes) == 1:
        return [tensor]
    return tf.split(tensor, sizes, axis=-1)


class SplitMatmul:
    """`a ↦ a·M` as `parts` matmuls over column blocks of M, concatenated.

    For recurrences with a single gate (the Elman RNN): the blocks are
    independent ops that run on separate cores; the result equals
    `tf.matmul(a, M)` up to float rounding.

    Args:
        matrix: `(K, N)` tensor M.
        transpose: Use Mᵀ `(N, K)` instead (transposed once, here).
        parts: Number of column blocks. Default: 1.

    Example:

    >>> mm = SplitMatmul(tf.ones((4, 6)), parts=2)
    >>> mm(tf.ones((3, 4))).shape
    TensorShape([3, 6])
    """

    def __init__(self, matrix, transpose=False, parts=1):
        matrix = tf.transpose(matrix) if transpose else matrix
        width = matrix.shape[1]
        sizes = [width // parts + (1 if p < width % parts else 0) for p in range(parts)]
        self.blocks = split_columns(matrix, sizes)

    def __call__(self, a):
        if len(self.blocks) == 1:
            return tf.matmul(a, self.blocks[0])
        return tf.concat([tf.matmul(a, block) for block in self.blocks], axis=1)


def time_loop(step, sequences, carry, num_outputs, reverse=False):
    """Runs `carry, outputs_t = step(carry, inputs_t)` along axis 0.

    The loop body runs `UNROLL` steps per iteration (a second loop does the
    last T mod `UNROLL` steps one by one), so the loop's own control ops
    (several per carried value per iteration) are paid once per `UNROLL`
    steps.

    Args:
        step: `(carry: list, inputs: list of (B, ·)) -> (carry, outputs)`,
            `outputs` a list of `num_outputs` tensors.
        sequences: List of `(T, B, ·)` tensors, or `TensorArray`s of T
            `(B, ·)` elements, read one step at a time.
        carry: List of tensors carried from step to step.
        num_outputs: How many tensors `step` emits per step.
        reverse: Visit t = T−1 … 0 (outputs still land at index t).

    Returns:
        `(final carry, [TensorArray of the outputs])`: `stack()` the ones
        needed whole; a later loop can read the others step by step without
        that copy.

    Example:

    >>> cumsum = lambda carry, xs: ([carry[0] + xs[0]], [carry[0] + xs[0]])
    >>> _, (ys,) = time_loop(cumsum, [tf.ones((3, 2, 1))], [tf.zeros((2, 1))], 1)
    >>> ys.stack()[:, 0, 0].numpy().tolist()
    [1.0, 2.0, 3.0]
    """
    first = sequences[0]
    if isinstance(first, tf.TensorArray):
        steps, static_steps = first.size(), None
    else:
        steps, static_steps = tf.shape(first)[0], first.shape[0]
    # clear_after_read=False: in eager mode a read would otherwise empty the
    # element, and a later stack() of a sequence read step by step is needed.
    writers = [tf.TensorArray(carry[0].dtype, size=steps, clear_after_read=False) for _ in range(num_outputs)]

    def read(sequence, t):
        return sequence.read(t) if isinstance(sequence, tf.TensorArray) else sequence[t]

    def loop(count, state):
        """Iterations of `count` steps each, while `count` steps remain."""

        def body(i, carry, writers):
            for k in range(count):
                t = steps - 1 - (i + k) if reverse else i + k
                carry, outputs = step(carry, [read(s, t) for s in sequences])
                writers = [w.write(t, y) for w, y in zip(writers, outputs, strict=True)]
            return i + count, list(carry), writers

        return tf.while_loop(
            lambda i, *_: i + count <= steps, body, state, parallel_iterations=PARALLEL_ITERATIONS
        )

    state = loop(UNROLL, (tf.constant(0), list(carry), writers))
    if static_steps is None or static_steps % UNROLL:
        state = loop(1, state)
    _, carry, writers = state
    return carry, writers


def flat(sequence):
    """`(T, B, N)` → `(T·B, N)`."""
    return tf.reshape(sequence, (-1, sequence.shape[-1]))


def sequence_matmul(a, b):
    """Σ_t a_tᵀ·b_t over a whole sequence as one GEMM: `(T,B,K), (T,B,N)` → `(K, N)`."""
    return tf.matmul(flat(a), flat(b), transpose_a=True)


def sequence_sum(a):
    """Σ_t Σ_b a_t,b: `(T, B, N)` → `(N,)` (only for the peephole vectors;
    the biases' sums come out of the weight GEMMs, see `with_ones`)."""
    return tf.reduce_sum(flat(a), axis=0)


def with_ones(sequence):
    """`(T, B, K)` → `(T, B, K+1)` with a last column of ones: then
    Σ_t [a_t, 1]ᵀ·d_t is the GEMM Σ_t a_tᵀ·d_t with the bias gradient Σ_t d_t
    as its last row, without a second pass over d."""
    return tf.concat([sequence, tf.ones_like(sequence[..., :1])], axis=-1)


def input_projection(x, kernels, biases):
    """XP = X·U + b for every step at once, per gate group.

    Args:
        x: `(T, B, F)`.
        kernels: The groups' `(F, N_g)` column blocks of U.
        biases: Their `(N_g,)` biases (or `None` for none).

    Returns:
        A list of `(T, B, N_g)` tensors.
    """
    rows = flat(x)  # (T·B, F)
    projections = []
    for kernel, bias in zip(kernels, biases, strict=True):
        xp = tf.matmul(rows, kernel)
        if bias is not None:
            xp = xp + bias
        projections.append(tf.reshape(xp, tf.concat([tf.shape(x)[:2], [kernel.shape[1]]], axis=0)))
    return projections


def input_gradients(x, kernels, dxps):
    """Gradients of `input_projection` from each group's dXP `(T, B, N_g)`.

    Returns:
        `(dX (T, B, F), dU (F, ΣN_g), db (ΣN_g,))`.
    """
    dx = tf.add_n([tf.matmul(flat(d), k, transpose_b=True) for k, d in zip(kernels, dxps, strict=True)])
    x_ones = with_ones(x)
    dkernel_bias = tf.concat([sequence_matmul(x_ones, d) for d in dxps], axis=1)  # (F+1, ΣN_g)
    return tf.reshape(dx, tf.shape(x)), dkernel_bias[:-1], dkernel_bias[-1]


def previous(sequence, first):
    """The sequence shifted one step later: `[first, s_0, …, s_{T−2}]`."""
    return tf.concat([first[None], sequence[:-1]], axis=0)


def with_bptt(fused, x, states, weights):
    """Runs `fused` over `x` with its hand-written backward as the gradient.

    Args:
        fused: A fused sequence implementation with `forward(x, states, weights, keep)`
            returning `(outputs, saved)` and `backward(x, states, weights,
            outputs, saved, upstream)` returning the gradients of
            `(x, *states, *weights)`.
        x: `(T, B, F)` time-major inputs.
        states: List of initial states, each `(B, H)`.
        weights: List of weight tensors in the kernel's order.

    Returns:
        `outputs`: `(Y (T, B, H), *final states (B, H))`.
    """
    num_states = len(states)

    @tf.custom_gradient
    def sequence(x, *tensors):
        states, weights = list(tensors[:num_states]), list(tensors[num_states:])
        outputs, saved = fused.forward(x, states, weights, keep=True)

        def grad(*upstream):
            upstream = [tf.zeros_like(o) if g is None else g for g, o in zip(upstream, outputs, strict=True)]
            return fused.backward(x, states, weights, outputs, saved, upstream)

        return tuple(outputs), grad

    return sequence(x, *states, *weights)
