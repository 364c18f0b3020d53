"""Vocabulary files a language model is exported with, in the formats Keras users have.

| the file holds | example | read as |
|---|---|---|
| rnnserve's own format (`vocab.json` of a run) | `{"level": "char", "tokens": ["[UNK]", "a", "b"]}` | as written |
| a JSON list of tokens, id i = the i-th | `["[UNK]", "a", "b"]` (`StringLookup.get_vocabulary()`) | ids as listed |
| a JSON `{token: id}` mapping | `{"a": 1, "b": 2}` (Keras `Tokenizer.word_index`) | ids as mapped |

The unknown token `[UNK]` (what text outside the vocabulary becomes) is id
0, or id 1 when id 0 is the padding token `""` (the layout of
`TextVectorization` and `StringLookup(mask_token="")`); neither is ever
generated. A list or mapping may leave id 0 out (Keras' `Tokenizer` starts
at 1): it becomes `[UNK]`, or the padding token when `[UNK]` is id 1
(`Tokenizer(oov_token="[UNK]")`). A `""` at id 0 with no `[UNK]` anywhere
becomes `[UNK]`. Any other layout is refused. The level of a list or a
mapping is `"char"` when every token after the reserved ones is one
character, else `"word"`.

Example:

```python
read_vocabulary("word_index.json").tokens[:3]
# ('[UNK]', 'e', 't')
```
"""

from __future__ import annotations

import json

from rnnserve.errors import UserError
from rnnserve.training.vocab import LEVELS, PADDING, UNK, Vocabulary

FORMATS = (
    '{"level": "char"|"word", "tokens": ["[UNK]", ...]}, a JSON list of tokens (id i = the i-th), '
    "or a JSON {token: id} mapping"
)
LAYOUTS = f"{UNK!r} at id 0, or the padding token {PADDING!r} at id 0 and {UNK!r} at id 1 (TextVectorization's layout)"


def _describe(value):
    kinds = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}
    return kinds.get(type(value), "a number")


def _from_mapping(mapping, source):
    ids = {}
    for token, index in mapping.items():
        if isinstance(index, bool) or not isinstance(index, int) or index < 0:
            raise UserError(
                f"{source} maps {token!r} to {json.dumps(index)}; a {{token: id}} vocabulary maps every "
                "token to a non-negative integer id."
            )
        if index in ids:
            raise UserError(f"{source} maps both {ids[index]!r} and {token!r} to id {index}.")
        ids[index] = token
    size = max(ids) + 1 if ids else 0
    missing = [index for index in range(1, size) if index not in ids]
    if missing:
        raise UserError(
            f"{source} has no token for id(s) {missing[:5]}; a {{token: id}} vocabulary needs every id "
            f"from 1 to {size - 1}."
        )
    unused = PADDING if ids.get(1) == UNK else UNK  # what the missing id 0 stands for
    return [ids.get(index, unused) for index in range(size)]


def vocabulary_from_tokens(tokens, source, level=None):
    """A `Vocabulary` of a token list (id i = `tokens[i]`), normalized as the module says.

    Args:
        tokens: The tokens by id.
        source: What they came from, named in errors.
        level: `"char"` or `"word"`; `None` infers it.

    Raises:
        UserError: a token is not a string, repeats, or `[UNK]` is misplaced.
    """
    tokens = list(tokens)
    for index, token in enumerate(tokens):
        if not isinstance(token, str):
            raise UserError(f"{source}: the token of id {index} is {_describe(token)}, not a string.")
    if tokens and tokens[0] == PADDING and UNK not in tokens:
        tokens[0] = UNK
    if tokens[:1] != [UNK] and tokens[:2] != [PADDING, UNK]:
        found = f"{tokens[0]!r} at id 0" if tokens else "no tokens"
        if UNK in tokens:
            found += f" and {UNK!r} at id {tokens.index(UNK)}"
        raise UserError(
            f"{source} has {found}; a language model's vocabulary has the unknown token {UNK!r} "
            f"(never generated) at its start: {LAYOUTS}."
        )
    seen = set()
    for token in tokens:
        if token in seen:
            raise UserError(f"{source} lists the token {token!r} twice.")
        seen.add(token)
    first_text = tokens.index(UNK) + 1
    if level is None:
        level = "char" if all(len(token) == 1 for token in tokens[first_text:]) else "word"
    return Vocabulary(tokens=tuple(tokens), level=level)


def read_vocabulary(path):
    """Reads a vocabulary file in any format of the module docstring.

    Raises:
        UserError: the file is missing, not JSON, or holds none of the formats
            (the message says which it expected and what it found).
    """
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError as error:
        raise UserError(
            f"{path} does not exist; a language model is exported with its vocabulary."
        ) from error
    except IsADirectoryError as error:
        raise UserError(f"{path} is a directory; --vocab takes a JSON file ({FORMATS}).") from error
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise UserError(f"{path} is not a JSON file ({error}); expected {FORMATS}.") from error
    if isinstance(data, list):
        return vocabulary_from_tokens(data, path)
    if isinstance(data, dict) and isinstance(data.get("tokens"), list):
        level = data.get("level", "char")
        if level not in LEVELS:
            raise UserError(f'{path} has level {json.dumps(level)}; expected "char" or "word".')
        return vocabulary_from_tokens(data["tokens"], path, level)
    if isinstance(data, dict):
        return vocabulary_from_tokens(_from_mapping(data, path), path)
    raise UserError(f"{path} holds {_describe(data)}; expected {FORMATS}.")
