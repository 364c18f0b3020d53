"""A Keras language model's own text layers (`StringLookup`, `TextVectorization`) as its vocabulary.

A model may carry its vocabulary: a `StringLookup` taking tokens, or a
`TextVectorization` taking text, in front of its `Embedding`. The chain
(`keras_import.py`) starts after the layer; this module gives what the
export needs of the layer:

- `model_vocabulary`: the layer's tokens (id i → token i);
- `lookup_problem` / `vectorizer_problem`: why a layer cannot be a
  language model's vocabulary (a layout other than `[UNK]` at id 0 or
  `""`, `[UNK]` at ids 0, 1; a `TextVectorization` whose text the export
  cannot reproduce), or None;
- `vectorizer_tables`: in-graph text signatures that standardize and split
  as the `TextVectorization` does (the layer's own code, in a ragged twin);
- `model_text`: the vocabulary, tables and metadata an export uses;
- `model_input`: what the model takes for given ids (the conversion's probe).

Example:

```python
vocabulary, tables, metadata = model_text(keras_model, None)
metadata
# {'text_vectorization': {'standardize': 'lower', 'split': 'character', 'output_sequence_length': None}}
```
"""

from __future__ import annotations

import keras
import numpy as np

from rnnserve.errors import UserError
from rnnserve.training.export.text import LayerTables
from rnnserve.training.export.vocab_files import FORMATS, LAYOUTS, vocabulary_from_tokens
from rnnserve.training.vocab import PADDING, UNK

# TextVectorization options a language model's text signatures reproduce.
_SPLITS = {"character": "", "whitespace": " "}  # split → what goes between decoded tokens
_STANDARDIZE = (None, "lower", "strip_punctuation", "lower_and_strip_punctuation")


def lookup_problem(layer):
    """Why a `StringLookup`'s ids are not a language model's vocabulary layout, or None."""
    vocabulary = layer.get_vocabulary()
    if layer.num_oov_indices != 1 or (vocabulary[:1] != [UNK] and vocabulary[:2] != [PADDING, UNK]):
        return (
            f"a language model's vocabulary starts with {LAYOUTS}, but this lookup's starts "
            f'{vocabulary[:2]}; use StringLookup(mask_token=None) or StringLookup(mask_token=""), '
            "with one OOV token"
        )
    return None


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


def vectorizer_problem(layer):
    """Why the text signatures cannot reproduce `layer` (a `TextVectorization`), or None."""
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
            return f"{reason}; a language model's TextVectorization needs {fix}"
    return None


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


def model_input(model, ids):
    """What `model` takes for the token ids `ids` (B, T): the ids, their tokens, or their text."""
    vocabulary = model_vocabulary(model)
    if vocabulary is None:
        return ids
    tokens = np.asarray(vocabulary, dtype=object)[ids]  # (B, T)
    vectorizer = text_vectorization(model)
    if vectorizer is None:
        return tokens
    text = np.array([_SPLITS[vectorizer.get_config()["split"]].join(row) for row in tokens], dtype=object)
    return text.reshape((-1, *[1] * (len(model.inputs[0].shape) - 1)))  # (B,) or (B, 1)


def model_text(model, vocabulary):
    """`(vocabulary, tables, metadata)` of a Keras language model's text signatures.

    A model with its own `TextVectorization` encodes text with it (a
    `--vocab` must then be the layer's vocabulary); else the vocabulary is
    `--vocab`'s, or the model's own `StringLookup`'s, or an error asking
    for `--vocab`. `tables` is None for the export's default
    (`text.VocabularyTables`).

    Args:
        model: The Keras model.
        vocabulary: `--vocab`'s `Vocabulary`, or None.

    Raises:
        UserError: no vocabulary at all, or a `--vocab` that is not the
            layer's.
    """
    tokens = model_vocabulary(model)
    vectorizer = text_vectorization(model)
    if vectorizer is not None:
        config = vectorizer.get_config()
        level = "char" if config["split"] == "character" else "word"
        own = vocabulary_from_tokens(tokens, f"the TextVectorization of model `{model.name}`", level)
        if vocabulary is not None and vocabulary.tokens != own.tokens:
            raise UserError(
                f"--vocab is not the vocabulary of model `{model.name}`'s own TextVectorization, which "
                "encodes its text; leave --vocab out."
            )
        described = {key: config[key] for key in ("standardize", "split", "output_sequence_length")}
        return own, vectorizer_tables(vectorizer, own), {"text_vectorization": described}
    if vocabulary is not None:
        return vocabulary, None, {}
    if tokens is None:
        raise UserError(
            f"Model `{model.name}` is a language model: pass --vocab FILE, the vocabulary its token ids "
            f"come from ({FORMATS})."
        )
    return vocabulary_from_tokens(tokens, f"the StringLookup of model `{model.name}`"), None, {}
