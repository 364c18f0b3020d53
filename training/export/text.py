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


class VocabularyTables:
    """A `Vocabulary` as in-graph lookups.

    Args:
        vocabulary: A `training.vocab.Vocabulary`.

    Attributes:
        table: The string → id `StaticHashTable`; track it in the export.
    """

    def __init__(self, vocabulary):
        self.level = vocabulary.level
        self.tokens = list(vocabulary.tokens)
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

    def encode(self, text):
        """`(B,)` strings → `(tokens (B, T) int32, lengths (B,) int32)`.

        Rows are right-padded with id 0 (`PADDING_ID`: the padding token, or
        `[UNK]` in a vocabulary without one).
        """
        pieces = self.split(text)  # (B, None)
        ids = tf.ragged.map_flat_values(self.table.lookup, pieces)  # (B, None) int64
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
        pieces = tf.gather(tf.constant(self.tokens), tokens)  # (B, N)
        return tf.strings.reduce_join(pieces, axis=-1)
