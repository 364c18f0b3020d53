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
| `TextVectorization` as the first layer (`output_mode="int"`, `split="character"` or `"whitespace"`, a built-in `standardize`, no `ngrams`) | dropped: the chain takes its ids; the text signatures run the layer (`vectorizer_tables`) |
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
from rnnserve.training.export.text import LayerTables
from rnnserve.training.export.vocab_files import LAYOUTS
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
# TextVectorization options a language model's text signatures reproduce.
_SPLITS = {"character": "", "whitespace": " "}  # split → what goes between decoded tokens
_STANDARDIZE = (None, "lower", "strip_punctuation", "lower_and_strip_punctuation")
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
        return (
            None  # an identity, e.g. `Activation("linear", dtype="float32")` ending a mixed-precision model
        )
    if isinstance(layer, keras.layers.StringLookup):
        _check_lookup(layer)
        return None
    if isinstance(layer, keras.layers.TextVectorization):
        _check_vectorizer(layer)
        return None
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


def _check_vectorizer(layer):
    config = layer.get_config()
    problems = (
        (config["output_mode"] != "int", f"output_mode={config['output_mode']!r} gives no token ids", 'output_mode="int"'),
        (config["ngrams"] is not None, "ngrams are not tokens one after another", "ngrams=None"),
        (config["split"] not in _SPLITS, f"split={config['split']!r} is not a split the export can decode",
         'split="character" or split="whitespace"'),
        (config["standardize"] not in _STANDARDIZE, f"standardize={config['standardize']!r} is not a built-in",
         f"standardize one of {', '.join(map(repr, _STANDARDIZE))}"),
    )  # fmt: skip
    for failed, reason, fix in problems:
        if failed:
            raise _refuse(layer, f"{reason}; a language model's TextVectorization needs {fix}")


def text_vectorization(model):
    """The model's own `TextVectorization` layer, or None."""
    layers = [layer for layer in model.layers if isinstance(layer, keras.layers.TextVectorization)]
    return layers[0] if len(layers) == 1 else None


def vectorizer_tables(layer, vocabulary):
    """`LayerTables` that standardize, split and look text up as `layer` does, for any text length.

    A twin of the layer with `ragged=True` and no `output_sequence_length`
    (a prompt is never cut or padded); decoding writes `split`'s separator
    before each token.

    Example:

    >>> from rnnserve.training.vocab import Vocabulary
    >>> layer = keras.layers.TextVectorization(split="character", standardize="lower")
    >>> layer.adapt(["Hi there"])
    >>> tokens = tuple(map(str, layer.get_vocabulary()))  # ('', '[UNK]', 'h', 'e', 't', 'r', 'i', ' ')
    >>> tables = vectorizer_tables(layer, Vocabulary(tokens, "char"))
    >>> tables.encode(tf.constant(["HI!"]))[0].numpy()  # lowercased as the layer does; "!" is [UNK]
    array([[2, 6, 1]], dtype=int32)
    """
    config = {**layer.get_config(), "ragged": True, "output_sequence_length": None}
    config.update(name=f"{layer.name}_ragged", vocabulary=[str(token) for token in layer.get_vocabulary()])
    twin = keras.layers.TextVectorization.from_config(config)
    twin.build((None,))  # (B,) strings; an export tracks built layers only
    return LayerTables(twin, vocabulary, separator=_SPLITS[config["split"]])


def _check_lookup(layer):
    vocabulary = layer.get_vocabulary()
    if layer.num_oov_indices != 1 or (vocabulary[:1] != [UNK] and vocabulary[:2] != [PADDING, UNK]):
        raise _refuse(
            layer,
            f"a language model's vocabulary starts with {LAYOUTS}, but this lookup's starts "
            f'{vocabulary[:2]}; use StringLookup(mask_token=None) or StringLookup(mask_token=""), '
            "with one OOV token",
        )


def model_vocabulary(model):
    """The token list of the model's own `StringLookup` or `TextVectorization` (id i → token i), or None.

    Example:

    >>> text = keras.Input(shape=(None,), dtype="string")
    >>> ids = keras.layers.StringLookup(vocabulary=list("abc"))(text)
    >>> model_vocabulary(keras.Model(text, ids))
    ['[UNK]', 'a', 'b', 'c']
    """
    kinds = (keras.layers.StringLookup, keras.layers.TextVectorization)
    lookups = [layer for layer in model.layers if isinstance(layer, kinds)]
    return [str(token) for token in lookups[0].get_vocabulary()] if len(lookups) == 1 else None


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


def _probe_input(model, probe):
    """What `model` takes for the token ids `probe` (B, T): the ids, their tokens, or their text."""
    vocabulary = model_vocabulary(model)
    if vocabulary is None:
        return probe
    tokens = np.asarray(vocabulary, dtype=object)[probe]  # (B, T)
    vectorizer = text_vectorization(model)
    if vectorizer is None:
        return tokens
    text = np.array([_SPLITS[vectorizer.get_config()["split"]].join(row) for row in tokens], dtype=object)
    return text.reshape((-1, *[1] * (len(model.inputs[0].shape) - 1)))  # (B,) or (B, 1)


def _check_reproduces(model, chain, vocab_size, first_id):
    batch, length = _PROBE_SHAPE
    vectorizer = text_vectorization(model)
    if vectorizer is not None and vectorizer.get_config()["output_sequence_length"]:
        length = min(length, vectorizer.get_config()["output_sequence_length"])  # the model cuts text there
    probe = np.random.default_rng(0).integers(first_id, vocab_size, (batch, length)).astype("int32")  # (B, T)
    expected = keras.ops.convert_to_numpy(model(_probe_input(model, probe), training=False))
    expected = expected[:, : probe.shape[1]]  # a TextVectorization may pad to output_sequence_length
    got = keras.ops.convert_to_numpy(_output_transform(model)(chain(probe, training=False)))
    tolerance = max(_PROBE_TOLERANCE.get(layer.compute_dtype, 1e-4) for layer in model.layers)
    if expected.shape != got.shape or not np.allclose(expected, got, atol=tolerance, rtol=0):
        raise UserError(
            f"Model `{model.name}` does not compute a plain chain of its layers (its logits differ "
            "from the chain's); only Embedding → recurrent layers → Dense models can be exported."
        )
