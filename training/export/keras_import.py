"""Any Keras language model of the supported layers → a chain of rnnserve's layers.

The signatures run a chain `tokens → Embedding → Recurrent… → Dense`
(`models.state`), because only `Recurrent` exposes its state. A Keras model
made of these layers converts:

| layer | becomes |
|---|---|
| `InputLayer` | dropped (the chain has its own `tokens` input) |
| `Embedding` (`mask_zero=False`) | itself |
| `SimpleRNN` / `LSTM` / `GRU` (`return_sequences=True`) | a one-layer `Recurrent` of the same cell, weights copied with `models.convert.load_keras_weights` |
| `keras.layers.RNN` over a cell of `models.cells` | a one-layer `Recurrent` of that cell, weights copied |
| `Recurrent` (unidirectional, not stateful) | itself |
| `Dropout` | itself (inactive when serving) |
| `Dense` / `TimeDistributed(Dense)`, linear | the `Dense` |
| `Dense` / `TimeDistributed(Dense)` with `softmax` or `log_softmax`, or followed by a `Softmax` / `Activation("softmax")` layer | a linear copy of the `Dense` |
| `Activation("linear")` (a mixed-precision model's float32 output) | dropped |
| `StringLookup` as the first layer (one OOV token: `mask_token=None`, `[UNK]` at id 0, or `mask_token=""`, `[UNK]` at id 1) | dropped: the chain takes its ids (`model_vocabulary` gives its tokens) |
| `TextVectorization` as the first layer (`output_mode="int"`, `split="character"` or `"whitespace"`, a built-in `standardize`, no `ngrams`) | dropped: the chain takes its ids; the text signatures run the layer (`keras_text.vectorizer_tables`) |
| `Embedding(mask_zero=True)` when id 0 is the padding token | an `Embedding` that masks nothing (text never holds id 0) |

A softmax output layer gives probabilities p = softmax(z); the chain serves
its pre-activation z as the logits (log p = z − logsumexp(z): logits up to a
constant per position, so sampling from softmax(z / temperature) samples
the model's own distribution).

Anything else is refused with an error naming the layer. After conversion the
chain's logits are compared with the original model's on a probe batch, so a
model that is not really a chain (branches, skip connections) is refused
instead of exported wrong.

Example:

>>> keras_model = keras.Sequential([keras.Input((None,), dtype="int32"),
...     keras.layers.Embedding(65, 16), keras.layers.LSTM(32, return_sequences=True),
...     keras.layers.GRU(32, return_sequences=True), keras.layers.Dense(65)])
>>> chain = as_language_model(keras_model)
>>> [type(layer).__name__ for layer in chain.layers]
['InputLayer', 'Embedding', 'Recurrent', 'Recurrent', 'Dense']
"""

from __future__ import annotations

import keras
import numpy as np

from rnnserve.errors import UserError
from rnnserve.models.cells import RecurrentCell
from rnnserve.models.convert import KERAS_CELLS, load_keras_weights
from rnnserve.models.recurrent import Recurrent
from rnnserve.training.export.keras_text import (
    lookup_problem,
    model_input,
    model_vocabulary,
    text_vectorization,
    vectorizer_problem,
)
from rnnserve.training.vocab import PADDING, UNK

SUPPORTED = (
    "Embedding (after an optional StringLookup or TextVectorization), SimpleRNN/LSTM/GRU with return_sequences=True, keras.layers.RNN "
    "over a cell of rnnserve.models.cells, rnnserve.models.Recurrent, Dropout, and a Dense or "
    "TimeDistributed(Dense) giving logits or softmax probabilities"
)
# Output activations whose pre-activation is the logits (up to a constant per position).
_NORMALIZING = ("softmax", "log_softmax")
# Keras built-in cell class → ours.
OUR_CELLS = {keras_cell: ours for ours, keras_cell in KERAS_CELLS.items()}
# Cell config keys that describe the layer, not the cell's computation.
_LAYER_KEYS = ("name", "dtype", "trainable", "units", "dropout", "seed")
_PROBE_SHAPE = (2, 7)
# How far the chain's logits may be from the model's on the probe, by the model's compute dtype:
# float32 arithmetic in a different order, or the rounding of a mixed-precision model.
_PROBE_TOLERANCE = {"float32": 1e-4, "float16": 3e-2, "bfloat16": 2e-1}


def _refuse(layer, reason):
    return UserError(
        f"Cannot export layer `{layer.name}` ({type(layer).__name__}) as part of a language model: "
        f"{reason}. Supported layers: {SUPPORTED}."
    )


def _check_sequence_layer(layer):
    if not layer.return_sequences:
        raise _refuse(layer, "it must return sequences (return_sequences=True)")
    if layer.go_backwards:
        raise _refuse(layer, "a backward layer cannot generate left to right")
    if getattr(layer, "return_state", False):
        raise _refuse(layer, "return_state=True is not a chain")


def _builtin_cell_kwargs(cell):
    kwargs = {"activation": keras.activations.serialize(cell.activation), "use_bias": cell.use_bias}
    if hasattr(cell, "recurrent_activation"):
        kwargs["recurrent_activation"] = keras.activations.serialize(cell.recurrent_activation)
    if hasattr(cell, "reset_after"):
        kwargs["reset_after"] = cell.reset_after
    return kwargs


def _recurrent_from_rnn(layer):
    """A `keras.layers.RNN` (built-in LSTM etc. included) → an equivalent one-layer `Recurrent`."""
    _check_sequence_layer(layer)
    cell = layer.cell
    if type(cell) in OUR_CELLS:
        target = Recurrent(OUR_CELLS[type(cell)], cell.units, name=layer.name, **_builtin_cell_kwargs(cell))
        load_keras_weights(target, layer)
        return target
    if isinstance(cell, RecurrentCell):
        kwargs = {k: v for k, v in cell.get_config().items() if k not in _LAYER_KEYS}
        target = Recurrent(type(cell), cell.units, name=layer.name, **kwargs)
        target.build((None, None, cell.kernel.shape[0]))
        target.cells[0].set_weights(cell.get_weights())
        return target
    raise _refuse(
        layer, f"its cell {type(cell).__name__} is neither a Keras built-in nor a models.cells cell"
    )


def _convert(layer, padded):
    """One source layer → the chain layer replacing it (None to drop it)."""
    if isinstance(layer, keras.layers.InputLayer):
        return None
    if isinstance(layer, keras.layers.Embedding):
        if layer.mask_zero and not padded:
            raise _refuse(
                layer,
                "mask_zero=True would mask [UNK] (id 0); rebuild it with mask_zero=False, or use a "
                'vocabulary whose id 0 is the padding token ""',
            )
        return _unmasked_copy(layer) if layer.mask_zero else layer
    if isinstance(layer, Recurrent):
        if layer.bidirectional:
            raise _refuse(layer, "a bidirectional layer reads the future, so it cannot generate")
        if layer.stateful:
            raise _refuse(layer, "a stateful layer keeps its state in variables; export its stateless twin")
        return layer
    if isinstance(layer, keras.layers.Bidirectional):
        raise _refuse(layer, "a bidirectional layer reads the future, so it cannot generate")
    if isinstance(layer, keras.layers.RNN):
        return _recurrent_from_rnn(layer)
    if isinstance(layer, keras.layers.Dropout):
        return layer
    if isinstance(layer, keras.layers.TimeDistributed) and isinstance(layer.layer, keras.layers.Dense):
        layer = layer.layer
    if isinstance(layer, keras.layers.Dense):
        activation = _activation(layer)
        if activation == "linear":
            return layer
        if activation in _NORMALIZING:
            return _linear_copy(layer)
        raise _refuse(layer, "the output layer must give logits or probabilities (no activation, or softmax)")
    if _activation(layer) in _NORMALIZING:
        return None  # a trailing Softmax layer; `_output_transform` applies it when comparing
    if _activation(layer) == "linear":
        return None  # an identity: `Activation("linear", dtype="float32")` ends a mixed-precision model
    if isinstance(layer, (keras.layers.StringLookup, keras.layers.TextVectorization)):
        problem = (
            lookup_problem(layer)
            if isinstance(layer, keras.layers.StringLookup)
            else vectorizer_problem(layer)
        )
        if problem:
            raise _refuse(layer, problem)
        return None  # the chain takes the layer's ids
    raise _refuse(layer, "it is not a layer of a chain language model")


def _activation(layer):
    """The name of a Dense / Activation / Softmax layer's activation, else None."""
    if isinstance(layer, keras.layers.Softmax):
        return "softmax"
    if isinstance(layer, (keras.layers.Dense, keras.layers.Activation)):
        return keras.activations.serialize(layer.activation)
    return None


def _linear_copy(dense):
    """`dense` without its activation: same weights, outputs the pre-activation."""
    copy = keras.layers.Dense(dense.units, use_bias=dense.use_bias, name=dense.name)
    copy.build(dense.kernel.shape[:1])
    copy.set_weights(dense.get_weights())
    return copy


def _unmasked_copy(embedding):
    """`embedding` with `mask_zero=False`: the same vectors, for ids that are never the padding id 0."""
    copy = keras.layers.Embedding(embedding.input_dim, embedding.output_dim, name=embedding.name)
    copy.build()
    copy.set_weights(embedding.get_weights())
    return copy


def _output_transform(model):
    """What turns the chain's logits into `model`'s outputs: identity, softmax or log_softmax."""
    last = model.layers[-1]
    if isinstance(last, keras.layers.TimeDistributed):
        last = last.layer
    activation = _activation(last)
    if activation == "softmax":
        return lambda logits: keras.ops.softmax(logits, axis=-1)
    if activation == "log_softmax":
        return lambda logits: keras.ops.log_softmax(logits, axis=-1)
    return lambda logits: logits


_KINDS = (
    (keras.layers.Embedding, "embedding"),
    (Recurrent, "recurrent"),
    (keras.layers.Dropout, "dropout"),
    (keras.layers.Dense, "dense"),
)


def _kind(layer):
    return next(kind for cls, kind in _KINDS if isinstance(layer, cls))


def _check_order(model, layers):
    kinds = [_kind(layer) for layer in layers]
    middle = kinds[1:-1]
    if (
        not kinds
        or kinds[0] != "embedding"
        or kinds[-1] != "dense"
        or "recurrent" not in middle
        or {"embedding", "dense"} & set(middle)
    ):
        raise UserError(
            f"Model `{model.name}` is not a language model chain Embedding → recurrent layers → "
            f"Dense (found {' → '.join(kinds) or 'no layers'})."
        )


def as_language_model(model, padded=False):
    """Converts a Keras language model into a chain `run_language_model` can run.

    Args:
        model: A built Keras `Sequential` or functional model, `tokens` (B,T)
            int → logits (B,T,V), of the layers in the module docstring.
        padded: Whether id 0 is the padding token `""` (never text), so
            that an `Embedding(mask_zero=True)` converts. The vocabulary of
            the model's own lookup layer says it itself. Default: `False`.

    Returns:
        A functional `keras.Model` with input `tokens` (B,T) int32 and output
        logits (B,T,V), equal to `model`'s.

    Raises:
        UserError: naming the first layer that cannot be converted, or when
            the converted chain does not reproduce `model`'s logits.
    """
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise UserError(
            f"Model `{model.name}` has {len(model.inputs)} inputs and {len(model.outputs)} outputs; "
            "a language model has one of each (tokens → logits)."
        )
    vocabulary = model_vocabulary(model)
    padded = padded or (vocabulary is not None and vocabulary[:2] == [PADDING, UNK])
    layers = [converted for layer in model.layers if (converted := _convert(layer, padded)) is not None]
    _check_order(model, layers)
    tokens = keras.Input(shape=(None,), dtype="int32", name="tokens")
    x = tokens
    for layer in layers:
        x = layer(x)
        if isinstance(layer, Recurrent):
            x = x[0]  # (outputs (B, T, H), final_state)
    chain = keras.Model(tokens, x, name=model.name)
    _check_reproduces(model, chain, vocab_size=layers[0].input_dim, first_id=2 if padded else 0)
    return chain


def _check_reproduces(model, chain, vocab_size, first_id):
    batch, length = _PROBE_SHAPE
    vectorizer = text_vectorization(model)
    if vectorizer is not None and vectorizer.get_config()["output_sequence_length"]:
        length = min(length, vectorizer.get_config()["output_sequence_length"])  # the model cuts text there
    probe = np.random.default_rng(0).integers(first_id, vocab_size, (batch, length)).astype("int32")  # (B, T)
    expected = keras.ops.convert_to_numpy(model(model_input(model, probe), training=False))
    expected = expected[:, : probe.shape[1]]  # a TextVectorization may pad to output_sequence_length
    got = keras.ops.convert_to_numpy(_output_transform(model)(chain(probe, training=False)))
    tolerance = max(_PROBE_TOLERANCE.get(layer.compute_dtype, 1e-4) for layer in model.layers)
    if expected.shape != got.shape or not np.allclose(expected, got, atol=tolerance, rtol=0):
        raise UserError(
            f"Model `{model.name}` does not compute a plain chain of its layers (its logits differ "
            "from the chain's); only Embedding → recurrent layers → Dense models can be exported."
        )
