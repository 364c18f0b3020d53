"""`Recurrent`: a multi-layer, optionally bidirectional recurrent layer shaped
like torch's `nn.RNN` / `nn.LSTM` / `nn.GRU`.

    outputs, h_n = Recurrent("gru", 32, num_layers=2)(x)           # (B,T,32), (2,B,32)
    outputs, (h_n, c_n) = Recurrent("lstm", 32, bidirectional=True)(x)

Layer l (0-based) of direction d (0 forward, 1 reverse) is sub-layer
`index = l·D + d`, exactly torch's order; every state tensor is stacked along
that index into `(L·D, B, H)`. Each direction owns one cell of
`models.cells` (its weights) and runs either

- through the cell's fused sequence kernel (`rnnserve.models.fused`: one GEMM for
  the input projection, a tight time loop, hand-written BPTT), when the call
  is eligible (no mask, no dropout inside the recurrence in training,
  standard activations; see `rnnserve.models.fused` for the exact rule), or
- through `keras.layers.RNN(cell)` otherwise, so masks, recurrent dropout
  and custom cells behave as in Keras.

Both paths compute the same function; `implementation="fused"` or `"cell"`
forces one. Outputs at masked (padded) steps are zero and a reverse
direction starts at each sequence's last unmasked step, as torch does with
packed sequences.
"""

from __future__ import annotations

import keras
from keras import ops

from rnnserve.models import fused
from rnnserve.models.cells import CELLS, cell_name, get_cell_class
from rnnserve.models.cells.base import check_rate

# Keyword arguments that configure the Keras layer itself, not its cells.
_LAYER_KWARGS = ("name", "dtype", "trainable", "autocast")
# Cell config keys `Recurrent` sets itself rather than passing through
# (`dropout` here is the inter-layer dropout; its cells never drop inputs).
_CELL_OWN_KEYS = ("name", "dtype", "trainable", "units", "dropout")


@keras.saving.register_keras_serializable(package="rnnserve")
class Recurrent(keras.layers.Layer):
    """A torch-shaped stack of recurrent layers over any cell of this package.

    Args:
        cell: `"rnn"`, `"lstm"`, `"gru"`, `"peephole_lstm"`, `"coupled_lstm"`
            or a `RecurrentCell` subclass.
        units: Positive integer, H, the state size of every layer.
        num_layers: Number of stacked layers L. Default: 1.
        bidirectional: Run each layer forward and backward and concatenate
            (D = 2). Default: `False`.
        dropout: Dropout on the outputs of every layer but the last (torch
            semantics), training only. Default: 0.
        time_major: Inputs and outputs are `(T, B, ·)` instead of `(B, T, ·)`.
            Default: `False`.
        stateful: Keep the final state in variables and start the next call
            from it (truncated BPTT across batches); needs a static batch size.
            `reset_state()` zeroes it. Default: `False`.
        implementation: `"auto"` runs each layer-direction through its
            fused kernel when the call is eligible and through
            `keras.layers.RNN(cell)` otherwise; `"fused"` always uses the
            kernel and raises a `ValueError` saying why when it cannot;
            `"cell"` always uses the cell. Default: `"auto"`.
        **kwargs: `name`, `dtype`, `trainable`, and any argument of the cell
            (`activation`, `recurrent_dropout`, `reset_after`, initializers…),
            applied to every cell.

    Call arguments:
        inputs: `(B, T, F)` (`(T, B, F)` if `time_major`).
        initial_state: `h_0` of shape `(L·D, B, H)`, or `(h_0, c_0)` for the
            LSTM family. Default: zeros (or the stored state when stateful).
        training: Whether dropout is applied.
        mask: `(B, T)` booleans (`(T, B)` if `time_major`), true for real
            steps; sequences must be right-padded.

    Returns:
        `(outputs, final_state)`: outputs `(B, T, D·H)` (`(T, B, D·H)` if
        `time_major`); final_state `h_n` `(L·D, B, H)` or `(h_n, c_n)`.

    Example:

    >>> layer = Recurrent("lstm", 16, num_layers=2, bidirectional=True)
    >>> outputs, (h_n, c_n) = layer(np.zeros((4, 7, 3), "float32"))
    >>> tuple(outputs.shape), tuple(h_n.shape)
    ((4, 7, 32), (4, 4, 16))
    """

    def __init__(
        self,
        cell,
        units,
        num_layers=1,
        bidirectional=False,
        dropout=0.0,
        time_major=False,
        stateful=False,
        implementation="auto",
        **kwargs,
    ):
        layer_kwargs = {k: kwargs.pop(k) for k in _LAYER_KWARGS if k in kwargs}
        super().__init__(**layer_kwargs)
        if not isinstance(num_layers, int) or num_layers < 1:
            raise ValueError(
                "Received an invalid value for argument `num_layers`. "
                f"Expected a positive integer, got {num_layers!r}."
            )
        check_rate("dropout", dropout)
        if stateful and bidirectional:
            raise ValueError(
                "A stateful `Recurrent` cannot be bidirectional: the reverse direction ends at "
                "the start of each window, which the next window does not continue. "
                "Use bidirectional=False, or stateful=False."
            )
        if implementation not in fused.IMPLEMENTATIONS:
            raise ValueError(
                "Received an invalid value for argument `implementation`. "
                f"Expected one of {fused.IMPLEMENTATIONS}, got {implementation!r}."
            )
        self.cell_class = get_cell_class(cell)
        self.units = units
        self.num_layers = num_layers
        self.bidirectional = bool(bidirectional)
        self.num_directions = 2 if self.bidirectional else 1
        self.dropout = float(dropout)
        self.time_major = bool(time_major)
        self.stateful = bool(stateful)
        self.implementation = implementation
        self.supports_masking = True
        self.input_spec = keras.layers.InputSpec(ndim=3)

        seed = kwargs.pop("seed", None)
        self.rnns = []
        for index in range(num_layers * self.num_directions):
            layer, direction = divmod(index, self.num_directions)
            suffix = f"l{layer}" + ("_reverse" if direction else "")
            cell_seed = None if seed is None else seed + index
            layer_cell = self.cell_class(
                units,
                name=f"cell_{suffix}",
                dtype=self.dtype_policy,
                seed=cell_seed,
                **kwargs,
            )
            self.rnns.append(
                keras.layers.RNN(
                    layer_cell,
                    return_sequences=True,
                    return_state=True,
                    go_backwards=bool(direction),
                    zero_output_for_mask=True,
                    name=f"rnn_{suffix}",
                    dtype=self.dtype_policy,
                )
            )
        self.inter_layer_dropout = keras.layers.Dropout(self.dropout, seed=seed, dtype=self.dtype_policy)
        self.state_variables = None
        if implementation == "fused":
            self._check_fused(fused.static_ineligibility(self.cells[0]))
            if self.cells[0].recurrent_dropout > 0.0:
                self._check_fused("recurrent_dropout applies in training")

    # -- structure ---------------------------------------------------------

    @property
    def cells(self):
        """The L·D cells in torch order (index = layer·D + direction)."""
        return [rnn.cell for rnn in self.rnns]

    @property
    def state_names(self):
        """Names of the state tensors, `("h",)` or `("h", "c")`."""
        return self.cell_class.STATES

    @property
    def output_size(self):
        """D·H, the width of `outputs`."""
        return self.num_directions * self.units

    def _batch_axis_first(self, tensor):
        return ops.transpose(tensor, (1, 0, 2)) if self.time_major else tensor

    def build(self, input_shape):
        if self.time_major:
            input_shape = (input_shape[1], input_shape[0], input_shape[2])
        batch, steps, features = input_shape
        if features is None:
            raise ValueError(
                f"The feature dimension of the inputs to `{self.name}` must "
                f"be defined. Received input shape {tuple(input_shape)}."
            )
        self.input_spec = keras.layers.InputSpec(ndim=3, axes={-1: features})
        for index, rnn in enumerate(self.rnns):
            in_dim = features if index < self.num_directions else self.output_size
            rnn.build((batch, steps, in_dim))
        if self.stateful:
            if batch is None:
                raise ValueError(
                    f"A stateful `{self.name}` needs a static batch size; "
                    f"received input shape {tuple(input_shape)}. Pass "
                    "`batch_size=` to `keras.Input`."
                )
            self.state_variables = [
                self.add_weight(
                    shape=(len(self.rnns), batch, self.units),
                    initializer="zeros",
                    trainable=False,
                    name=f"{state}_state",
                )
                for state in self.state_names
            ]

    def reset_state(self):
        """Zeroes the stored state of a stateful layer (no-op otherwise)."""
        for variable in self.state_variables or []:
            variable.assign(ops.zeros_like(variable))

    # -- running -----------------------------------------------------------

    def _initial_states(self, initial_state, batch_size):
        """Per sub-layer list of state tensors `[(B, H), ...]`, or Nones."""
        if initial_state is None and self.stateful:
            built_for = self.state_variables[0].shape[1]
            if batch_size is not None and batch_size != built_for:
                raise ValueError(
                    f"The stateful `{self.name}` keeps the state of {built_for} sequences; "
                    f"received a batch of {batch_size}. Feed batches of {built_for} "
                    "(or pass `initial_state`)."
                )
            initial_state = [ops.cast(v, self.compute_dtype) for v in self.state_variables]
        if initial_state is None:
            return [None] * len(self.rnns)
        stacked = list(initial_state) if isinstance(initial_state, (list, tuple)) else [initial_state]
        if len(stacked) != len(self.state_names):
            raise ValueError(
                f"`{self.name}` ({cell_name(self.cell_class) or self.cell_class.__name__}) "
                f"expects initial_state {self._state_description()}, "
                f"got {len(stacked)} tensor(s)."
            )
        expected = (len(self.rnns), batch_size, self.units)
        for name, tensor in zip(self.state_names, stacked):
            shape = tuple(tensor.shape)
            if len(shape) != 3 or shape[0] != expected[0] or shape[2] != expected[2]:
                raise ValueError(
                    f"Received an invalid `initial_state` for `{self.name}`: "
                    f"{name}_0 must have shape (L·D, B, H) = "
                    f"({expected[0]}, B, {expected[2]}), got {shape}."
                )
        return [[tensor[index] for tensor in stacked] for index in range(len(self.rnns))]

    def _state_description(self):
        names = [f"{n}_0" for n in self.state_names]
        return names[0] if len(names) == 1 else "(" + ", ".join(names) + ")"

    def _check_fused(self, reason):
        if reason:
            raise ValueError(
                f"`{self.name}` has implementation='fused' but cannot run its fused kernel: "
                f"{reason}. Use implementation='auto' to fall back to the cell."
            )

    def uses_fused(self, index, mask=None, training=None):
        """Whether sub-layer `index` runs its fused kernel for a call with
        this `mask` and `training` (the rule in `rnnserve.models.fused`).

        Raises a `ValueError` saying why when `implementation="fused"` and the
        call is not eligible.
        """
        if self.implementation == "cell":
            return False
        reason = fused.call_ineligibility(self.rnns[index].cell, mask, training)
        if self.implementation == "fused":
            self._check_fused(reason)
        return reason is None

    def run_direction(self, index, inputs, initial_state, mask, training):
        """Runs sub-layer `index` over `(B, T, in)` inputs, fused when eligible.

        Returns `(outputs (B, T, H) in input time order, [final states])`.
        """
        rnn = self.rnns[index]
        if self.uses_fused(index, mask, training):
            return fused.run_fused(
                rnn.cell, inputs, initial_state, reverse=rnn.go_backwards, training=training
            )
        outputs, *states = rnn(inputs, initial_state=initial_state, mask=mask, training=training)
        if rnn.go_backwards:
            outputs = ops.flip(outputs, axis=1)
        return outputs, states

    def call(self, inputs, initial_state=None, training=None, mask=None):
        x = self._batch_axis_first(inputs)  # (B, T, F)
        if x.shape[1] == 0:
            raise ValueError(
                f"`{self.name}` received sequences of length 0 (input shape {tuple(inputs.shape)})."
            )
        if mask is not None and self.time_major:
            mask = ops.transpose(mask, (1, 0))
        states = self._initial_states(initial_state, x.shape[0])
        if x.shape[1] == 1 and mask is None and not training:
            # One position of inference (a generation step): one cell call per
            # sub-layer, no time loop.
            batch = ops.shape(x)[0]
            cell_states = [state or cell.get_initial_state(batch) for state, cell in zip(states, self.cells)]
            x, finals = self.step(x[:, 0], cell_states)
            x = x[:, None]  # (B, 1, D·H)
        else:
            x, finals = self._run_sequence(x, states, mask, training)
        final_state = [
            ops.stack([final[k] for final in finals], axis=0)  # (L·D, B, H)
            for k in range(len(self.state_names))
        ]
        if self.stateful:
            for variable, value in zip(self.state_variables, final_state):
                variable.assign(ops.cast(value, variable.dtype))
        outputs = self._batch_axis_first(x)
        return outputs, self._structure_state(final_state)

    def _run_sequence(self, x, states, mask, training):
        """Every layer over the whole `(B, T, F)` sequence; `(outputs, finals)`."""
        finals = []
        for layer in range(self.num_layers):
            directions = []
            for direction in range(self.num_directions):
                index = layer * self.num_directions + direction
                out, final = self.run_direction(index, x, states[index], mask, training)
                directions.append(out)  # (B, T, H)
                finals.append(final)
            x = directions[0] if len(directions) == 1 else ops.concatenate(directions, axis=-1)
            if layer < self.num_layers - 1 and self.dropout > 0.0:
                x = self.inter_layer_dropout(x, training=training)
        return x, finals

    def step(self, inputs, states):
        """One position of inference without a time axis: each sub-layer is
        one cell call (what a generation loop runs per token).

        Args:
            inputs: `(B, F)`, the input at this position.
            states: Per sub-layer (torch order), the cell's state list
                `[h]` or `[h, c]`, each `(B, H)`.

        Returns:
            `(outputs (B, D·H), new states in the same structure)`. Equal to
            `call` on `inputs[:, None]` with these states stacked, in
            inference; a stateful layer's stored state is neither read nor
            written.

        Example:

        >>> layer = Recurrent("lstm", 8, num_layers=2)
        >>> zeros = [[np.zeros((3, 8), "float32")] * 2] * 2
        >>> out, states = layer.step(np.zeros((3, 5), "float32"), zeros)
        >>> tuple(out.shape), len(states), len(states[0])
        ((3, 8), 2, 2)
        """
        x, finals = inputs, []
        for layer in range(self.num_layers):
            outputs = []
            for direction in range(self.num_directions):
                index = layer * self.num_directions + direction
                output, state = self.rnns[index].cell(x, list(states[index]), training=False)
                outputs.append(output)
                finals.append(state)
            x = outputs[0] if len(outputs) == 1 else ops.concatenate(outputs, axis=-1)
        return x, finals

    def _structure_state(self, tensors):
        return tensors[0] if len(tensors) == 1 else tuple(tensors)

    def compute_output_shape(self, input_shape):
        batch = input_shape[1] if self.time_major else input_shape[0]
        outputs = tuple(input_shape[:2]) + (self.output_size,)
        state = (len(self.rnns), batch, self.units)
        return outputs, self._structure_state([state] * len(self.state_names))

    def compute_mask(self, inputs, mask=None):
        return mask, self._structure_state([None] * len(self.state_names))

    def get_config(self):
        cell_config = self.cells[0].get_config()
        cell_kwargs = {k: v for k, v in cell_config.items() if k not in _CELL_OWN_KEYS}
        name = cell_name(self.cell_class)
        cell = name if name else keras.saving.get_registered_name(self.cell_class)
        return {
            **super().get_config(),
            "cell": cell,
            "units": self.units,
            "num_layers": self.num_layers,
            "bidirectional": self.bidirectional,
            "dropout": self.dropout,
            "time_major": self.time_major,
            "stateful": self.stateful,
            "implementation": self.implementation,
            **cell_kwargs,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        cell = config.pop("cell")
        if cell not in CELLS:
            cell = keras.saving.get_registered_object(cell)
        return cls(cell, **config)
