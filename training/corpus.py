"""Text corpora: reading a user's file with clear errors, and the built-in
default corpus.

The default corpus needs no download and copies no text from elsewhere: it
is assembled at run time from documentation that ships inside every CPython
installation — the language reference topics behind `help("topics")`
(`pydoc_data.topics`) followed by the docstrings of a fixed list of standard
library modules. About 0.8 MB of English prose with code in it: enough for a
two-minute character model to learn words, punctuation and indentation.
"""

from __future__ import annotations

import ast
import importlib.util
import os

from rnnserve.errors import UserError

BUILTIN = "builtin"
# Standard-library modules whose docstrings join the built-in corpus, in order.
DOCSTRING_MODULES = (
    "argparse", "bisect", "calendar", "collections", "configparser", "contextlib", "copy", "csv",
    "dataclasses", "datetime", "decimal", "difflib", "doctest", "email.message", "enum", "fractions",
    "functools", "heapq", "http.server", "inspect", "json", "logging", "pathlib", "pickle", "pprint",
    "queue", "random", "re", "sched", "shutil", "statistics", "string", "subprocess", "tarfile",
    "tempfile", "textwrap", "threading", "typing", "unittest", "urllib.parse", "zipfile",
)  # fmt: skip


class CorpusError(UserError):
    """A corpus that cannot be used: missing, a directory, not UTF-8, too short."""


def _module_docstrings(module_name):
    """Docstrings of a standard-library module's source, in source order.

    Read with `ast` from the file, not from imported objects, so nothing is
    imported and libraries that patch the standard library at run time
    cannot change the corpus.
    """
    with open(importlib.util.find_spec(module_name).origin, encoding="utf-8") as f:
        tree = ast.parse(f.read())
    docs = [ast.get_docstring(tree)]
    for node in tree.body:
        if isinstance(node, (ast.ClassDef, ast.FunctionDef)) and not node.name.startswith("_"):
            docs.append(ast.get_docstring(node))
            if isinstance(node, ast.ClassDef):
                docs.extend(
                    ast.get_docstring(item)
                    for item in node.body
                    if isinstance(item, ast.FunctionDef) and not item.name.startswith("_")
                )
    return [doc for doc in docs if doc]


def builtin_corpus():
    """The default corpus text (deterministic for a given Python version).

    Example:

    >>> text = builtin_corpus()
    >>> len(text) > 500_000
    True
    """
    from pydoc_data.topics import topics

    parts = [topics[key].strip() for key in sorted(topics)]  # shipped as data: no import side effects
    for module_name in DOCSTRING_MODULES:
        parts.extend(_module_docstrings(module_name))
    return "\n\n".join(parts) + "\n"


def load_corpus(path):
    """Reads a UTF-8 text corpus, or the built-in one for `None`/"builtin".

    Raises:
        CorpusError: one sentence naming the file and what is wrong with it.

    Example:

    ```python
    text = load_corpus("my-text.txt")  # any UTF-8 text file
    ```
    """
    if path is None or path == BUILTIN:
        return builtin_corpus()
    path = os.fspath(path)
    if not os.path.exists(path):
        raise CorpusError(f"corpus file {path!r} does not exist; pass --corpus PATH to a UTF-8 text file.")
    if os.path.isdir(path):
        raise CorpusError(f"corpus path {path!r} is a directory; pass --corpus PATH to a UTF-8 text file.")
    try:
        with open(path, "rb") as f:
            data = f.read()
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise CorpusError(
            f"corpus file {path!r} is not UTF-8 text (invalid byte at offset {error.start}); "
            "convert it to UTF-8 first."
        ) from error
    except OSError as error:
        raise CorpusError(f"corpus file {path!r} cannot be read: {error.strerror}.") from error
