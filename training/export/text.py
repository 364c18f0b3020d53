"""The vocabulary inside the graph: text ↔ token ids with standard TF ops only.

`encode` splits text exactly as `training.vocab.split_tokens` does and looks
the pieces up in a `tf.lookup.StaticHashTable` (unknown pieces → the
vocabulary's `[UNK]` id, 0 or 1: `Vocabulary.unk_id`);
`decode` gathers the token strings and joins them. Text is first made valid
UTF-8 (invalid bytes become U+FFFD, which is `[UNK]` unless the vocabulary
has it).

- Character level: `tf.strings.unicode_split`, one piece per code point,
  like Python's `list(text)`.
- Word level: `tf.strings.regex_replace` puts the byte 0xFF (which never
  occurs in UTF-8) before every match of `WORD_PATTERN`, and
  `tf.strings.split` cuts there. The pattern's three alternatives cover
  every character, so the pieces are exactly Python's
  `re.findall(WORD_PATTERN, text, re.ASCII)`. (RE2's `\\s` lacks `\\v`, which
  then matches the single-character alternative instead: the same piece.)

A language model with its own `TextVectorization` layer gets `LayerTables`
instead: the layer (a ragged twin of it) standardizes, splits and looks up
exactly as the model does, and decoding puts the layer's separator before
each token.

Example:

```python
tables = VocabularyTables(Vocabulary.build("hello world"))
tables.encode(tf.constant(["hell", "wo?"]))
# (<tf.Tensor: [[4, 3, 5, 5], [8, 6, 0, 0]]>, <tf.Tensor: [4, 3]>)
```
"""

from __future__ import annotations

import tensorflow as tf

from rnnserve.training.export.checks import guarded, require
from rnnserve.training.vocab import PADDING_ID, WORD_PATTERN

_CUT = b"\xff"  # not a byte of any UTF-8 text


class _Tables:
    """What both kinds of tables share: padding the ids, checking rows, decoding."""

    def __init__(self, vocabulary, pieces):
        self.level = vocabulary.level
        self.tokens = list(vocabulary.tokens)
        self.pieces = list(pieces)  # the text each id decodes to

    def ids(self, text):
        """`(B,)` strings → `(B, None)` ragged int64 ids."""
        raise NotImplementedError

    def encode(self, text):
        """`(B,)` strings → `(tokens (B, T) int32, lengths (B,) int32)`.

        Rows are right-padded with id 0 (`PADDING_ID`: the padding token, or
        `[UNK]` in a vocabulary without one).
        """
        ids = self.ids(text)  # (B, None) int64
        tokens = tf.cast(ids.to_tensor(default_value=PADDING_ID), tf.int32)  # (B, T)
        return tokens, tf.cast(ids.row_lengths(), tf.int32)

    def encode_rows(self, text, name, row="row"):
        """`encode`, failing the call (INVALID_ARGUMENT naming input `name`) if a row has no token."""
        tokens, lengths = self.encode(text)
        shortest = tf.reduce_min(tf.concat([lengths, [1]], axis=0))  # 1 for an empty batch
        message = f"Received an invalid `{name}`: every {row} needs at least one token, got an empty one"
        return tuple(guarded([tokens, lengths], [require(shortest > 0, message)]))

    def decode(self, tokens):
        """`(B, N)` ids → `(B,)` strings (`[UNK]` prints as itself, the padding token as nothing)."""
        pieces = tf.gather(tf.constant(self.pieces), tokens)  # (B, N)
        return tf.strings.reduce_join(pieces, axis=-1)


class VocabularyTables(_Tables):
    """A `Vocabulary` as in-graph lookups, split as `training.vocab.split_tokens` splits.

    Args:
        vocabulary: A `training.vocab.Vocabulary`.

    Attributes:
        table: The string → id `StaticHashTable`; track it in the export.
    """

    def __init__(self, vocabulary):
        super().__init__(vocabulary, vocabulary.tokens)
        initializer = tf.lookup.KeyValueTensorInitializer(
            tf.constant(self.tokens), tf.range(len(self.tokens), dtype=tf.int64)
        )
        self.table = tf.lookup.StaticHashTable(initializer, default_value=vocabulary.unk_id)

    def split(self, text):
        """`(B,)` strings → `(B, None)` ragged pieces."""
        text = tf.strings.unicode_transcode(text, "UTF-8", "UTF-8", errors="replace")
        if self.level == "char":
            return tf.strings.unicode_split(text, "UTF-8")
        marked = tf.strings.regex_replace(text, f"({WORD_PATTERN})", _CUT + b"\\1")
        return tf.strings.split(marked, sep=_CUT)[:, 1:]  # drop the empty piece before the first cut

    def ids(self, text):
        return tf.ragged.map_flat_values(self.table.lookup, self.split(text))


class LayerTables(_Tables):
    """In-graph text signatures whose ids come from a Keras text layer (a `TextVectorization`).

    Args:
        layer: Callable `(B,)` strings → `(B, None)` ragged ids, e.g.
            `TextVectorization(..., ragged=True)`; it holds its own lookup.
        vocabulary: The layer's vocabulary as a `Vocabulary`.
        separator: Written before every decoded token but the padding
            token: `""` for characters, `" "` for whitespace-split words (so
            a decoded continuation appends to its prompt).

    Attributes:
        table: The layer; track it in the export.
    """

    def __init__(self, layer, vocabulary, separator=""):
        pieces = [
            "" if i == vocabulary.padding_id else separator + t for i, t in enumerate(vocabulary.tokens)
        ]
        super().__init__(vocabulary, pieces)
        self.table = layer

    def ids(self, text):
        text = tf.strings.unicode_transcode(text, "UTF-8", "UTF-8", errors="replace")
        return tf.cast(self.table(text), tf.int64)
