"""`Vocabulary`: text ↔ token ids, at character or word level, saved as JSON
next to every model.

`[UNK]` is the token of everything not in the vocabulary. It is id 0 in the
vocabularies rnnserve builds; a vocabulary may instead start with the
padding token `""` at id 0 and `[UNK]` at id 1 (the layout of Keras'
`TextVectorization` and of `StringLookup(mask_token="")`). Neither id is
text a model writes: both are never generated (`reserved_ids`). Character level keeps every distinct character (sorted, so
the same text always gives the same ids). Word level splits text with
`WORD_PATTERN` into words, single whitespace characters and single
punctuation characters, so `decode(encode(text)) == text` whenever every
token is known. `WORD_PATTERN` is ASCII-only so that Python's `re` (with
`re.ASCII`) and TensorFlow's RE2 split text identically: exports tokenize
in-graph with the same pattern.
"""

from __future__ import annotations

import collections
import json
import re
from dataclasses import dataclass

import numpy as np

from rnnserve.training.files import atomic_write_text

UNK = "[UNK]"
UNK_ID = 0  # `[UNK]`'s id in the vocabularies rnnserve builds
PADDING = ""  # Keras' mask token, at id 0 of a TextVectorization vocabulary
PADDING_ID = 0
LEVELS = ("char", "word")
# A word, or one whitespace character, or one other character.
WORD_PATTERN = r"[A-Za-z0-9_]+|\s|[^A-Za-z0-9_\s]"
_WORD_RE = re.compile(WORD_PATTERN, re.ASCII)
FORMAT = 1


def split_tokens(text, level):
    """Splits text into the units of a `level` vocabulary (no lookup).

    Example:

    >>> split_tokens("Hi, you.", "word")
    ['Hi', ',', ' ', 'you', '.']
    """
    if level == "char":
        return list(text)
    if level == "word":
        return _WORD_RE.findall(text)
    raise ValueError(f"Received an invalid vocabulary level {level!r}; expected one of {LEVELS}.")


@dataclass(frozen=True)
class Vocabulary:
    """An ordered token list: `tokens[i]` is the token of id i.

    Args:
        tokens: The tokens: `[UNK]` first, or the padding token `""` then
            `[UNK]` (TextVectorization's layout).
        level: `"char"` or `"word"`.

    Attributes:
        unk_id: The id of `[UNK]` (0, or 1 after the padding token): what an
            unknown token encodes to.
        padding_id: `PADDING_ID` when the vocabulary has the padding token,
            else `None`.
        reserved_ids: The ids that are not text (`[UNK]`, padding): never
            generated.

    Example:

    >>> vocab = Vocabulary.build("hello world", level="char")
    >>> vocab.encode("hell")
    array([4, 3, 5, 5], dtype=int32)
    >>> vocab.decode(vocab.encode("hello?"))
    'hello[UNK]'
    >>> padded = Vocabulary(("", "[UNK]", "h", "i"))
    >>> padded.encode("hi!"), padded.reserved_ids
    (array([2, 3, 1], dtype=int32), (0, 1))
    """

    tokens: tuple[str, ...]
    level: str = "char"

    def __post_init__(self):
        if self.level not in LEVELS:
            raise ValueError(
                f"Received an invalid vocabulary level {self.level!r}; expected one of {LEVELS}."
            )
        if self.tokens[:1] == (UNK,):
            unk_id, padding_id = UNK_ID, None
        elif self.tokens[:2] == (PADDING, UNK):
            unk_id, padding_id = UNK_ID + 1, PADDING_ID
        else:
            raise ValueError(
                f"A vocabulary starts with {UNK!r}, or with the padding token {PADDING!r} then {UNK!r}."
            )
        if len(set(self.tokens)) != len(self.tokens):
            raise ValueError("A vocabulary's tokens must be distinct.")
        object.__setattr__(self, "_ids", {token: i for i, token in enumerate(self.tokens)})
        object.__setattr__(self, "unk_id", unk_id)
        object.__setattr__(self, "padding_id", padding_id)
        object.__setattr__(self, "reserved_ids", tuple(range(unk_id + 1)))

    @classmethod
    def build(cls, text, level="char", max_size=None, min_count=1):
        """Builds the vocabulary of `text`.

        Args:
            text: The training text.
            level: `"char"` or `"word"`. Default: `"char"`.
            max_size: Keep at most this many tokens (with `[UNK]`), the most
                frequent first. Default: `None` (all).
            min_count: Drop tokens seen fewer times. Default: 1.
        """
        counts = collections.Counter(split_tokens(text, level))
        counts.pop(UNK, None)
        kept = [token for token, count in counts.items() if count >= min_count]
        if max_size is not None:
            kept = sorted(kept, key=lambda token: (-counts[token], token))[: max(max_size - 1, 0)]
        return cls(tokens=(UNK, *sorted(kept)), level=level)

    def __len__(self):
        return len(self.tokens)

    def id_of(self, token):
        """The id of one token, `unk_id` if unknown."""
        return self._ids.get(token, self.unk_id)

    def encode(self, text):
        """Text → `(N,)` int32 ids; unknown tokens become `unk_id`."""
        return np.array([self.id_of(t) for t in split_tokens(text, self.level)], dtype=np.int32)

    def decode(self, ids):
        """Ids → text; `[UNK]` prints as itself, the padding token as nothing."""
        return "".join(self.tokens[int(i)] for i in np.asarray(ids).reshape(-1))

    def to_json(self):
        """The JSON text `save` writes: `{"format", "level", "tokens"}`."""
        return json.dumps(
            {"format": FORMAT, "level": self.level, "tokens": list(self.tokens)}, ensure_ascii=False
        )

    def save(self, path):
        """Writes the vocabulary as JSON, atomically."""
        atomic_write_text(path, self.to_json())

    @classmethod
    def load(cls, path):
        """Reads a vocabulary saved by `save`; a bad file is a clear ValueError."""
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
            return cls(tokens=tuple(data["tokens"]), level=data["level"])
        except FileNotFoundError:
            raise
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise ValueError(f"{path} is not a vocabulary file written by rnnserve ({error}).") from error
