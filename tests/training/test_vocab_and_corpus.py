"""Vocabularies round-trip text and JSON; the built-in corpus is offline,
deterministic and large; bad corpora are clear errors."""

import json
import subprocess
import sys

import numpy as np
import pytest

from rnnserve.training.corpus import CorpusError, builtin_corpus, load_corpus
from rnnserve.training.vocab import UNK, UNK_ID, WORD_PATTERN, Vocabulary, split_tokens
from tests.conftest import REPO_ROOT


def test_char_vocabulary_round_trips_known_text_and_maps_the_rest_to_unk():
    vocab = Vocabulary.build("hello world")
    assert vocab.tokens[0] == UNK and UNK_ID == 0
    assert vocab.decode(vocab.encode("low hello")) == "low hello"
    assert list(vocab.encode("hz")) == [vocab.id_of("h"), UNK_ID]


def test_word_vocabulary_round_trips_words_spaces_and_punctuation():
    text = "To be, or not to be:\nthat is the question."
    vocab = Vocabulary.build(text, level="word")
    assert vocab.decode(vocab.encode(text)) == text
    assert split_tokens("be,  or", "word") == ["be", ",", " ", " ", "or"]


def test_word_pattern_splits_the_same_in_tensorflow_re2():
    import tensorflow as tf

    text = "It's 9:30 -- time_to go!\tNow"
    marked = tf.strings.regex_replace(text, f"({WORD_PATTERN})", "\x00\\1").numpy().decode()
    assert [t for t in marked.split("\x00") if t] == split_tokens(text, "word")


def test_max_size_keeps_the_most_frequent_tokens():
    vocab = Vocabulary.build("aaaa bbb cc d", level="char", max_size=3)
    assert set(vocab.tokens) == {UNK, "a", " "}


def test_json_round_trip(tmp_path):
    vocab = Vocabulary.build("naïve café ☕", level="char")
    vocab.save(tmp_path / "vocab.json")
    assert Vocabulary.load(tmp_path / "vocab.json") == vocab
    assert json.loads((tmp_path / "vocab.json").read_text(encoding="utf-8"))["level"] == "char"


def test_corrupt_vocabulary_file_is_a_clear_error(tmp_path):
    (tmp_path / "vocab.json").write_text('{"tokens": ["a"]')
    with pytest.raises(ValueError, match="is not a vocabulary file written by rnnserve"):
        Vocabulary.load(tmp_path / "vocab.json")


def test_builtin_corpus_is_deterministic_large_and_built_offline():
    """Rebuilt in a fresh interpreter with networking disabled: same text."""
    code = (
        "import socket\n"
        "def refuse(*a, **k): raise OSError('network disabled')\n"
        "socket.socket.connect = refuse\n"
        "from training.corpus import builtin_corpus\n"
        "import hashlib, sys\n"
        "sys.stdout.write(hashlib.sha256(builtin_corpus().encode()).hexdigest())\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    )
    import hashlib

    text = builtin_corpus()
    assert out.stdout == hashlib.sha256(text.encode()).hexdigest()
    assert len(text) > 500_000
    assert len(Vocabulary.build(text)) < 200
    assert "statement" in text and "def " in text


def test_load_corpus_reads_utf8(tmp_path):
    (tmp_path / "c.txt").write_text("héllo\n", encoding="utf-8")
    assert load_corpus(tmp_path / "c.txt") == "héllo\n"
    assert load_corpus(None) == load_corpus("builtin")


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: p / "missing.txt", "does not exist"),
        (lambda p: p, "is a directory"),
        (
            lambda p: (p / "latin1.txt").write_bytes("caf\xe9".encode("latin-1")) and p / "latin1.txt",
            r"is not UTF-8 text \(invalid byte at offset 3\)",
        ),
    ],
)
def test_bad_corpus_is_a_corpus_error(tmp_path, make, message):
    with pytest.raises(CorpusError, match=message):
        load_corpus(make(tmp_path))


def test_encoded_ids_fit_int32():
    assert Vocabulary.build("abc").encode("abc").dtype == np.int32
