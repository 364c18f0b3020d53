"""The vocabulary files `export --vocab` reads: rnnserve's format, a JSON list, a {token: id} mapping.

The list is what `keras.layers.StringLookup.get_vocabulary()` returns and the
mapping what Keras' `Tokenizer.word_index` holds (ids from 1), so the
oracles are those layers' own conventions: id i is the i-th listed token,
or the token mapped to i. Every bad file is one sentence naming what was
expected and what the file holds.
"""

import json

import keras
import pytest

from rnnserve.errors import UserError
from rnnserve.training.export.vocab_files import read_vocabulary
from tests.export.artifacts import run_rnnserve, user_error_line


def _file(tmp_path, content):
    path = tmp_path / "vocab.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


def test_a_string_lookup_vocabulary_list_keeps_its_ids(tmp_path):
    tokens = keras.layers.StringLookup(vocabulary=list("helo"), mask_token=None).get_vocabulary()
    vocabulary = read_vocabulary(_file(tmp_path, tokens))
    assert list(vocabulary.tokens) == tokens and vocabulary.level == "char"


def test_a_text_vectorization_vocabulary_keeps_its_padding_token_and_unk_at_id_1(tmp_path):
    layer = keras.layers.TextVectorization(vocabulary=["the", "cat"], standardize=None)
    tokens = layer.get_vocabulary()  # ['', '[UNK]', 'the', 'cat']
    vocabulary = read_vocabulary(_file(tmp_path, tokens))
    assert list(vocabulary.tokens) == tokens and vocabulary.level == "word"
    assert (vocabulary.unk_id, vocabulary.padding_id, vocabulary.reserved_ids) == (1, 0, (0, 1))
    assert list(vocabulary.encode("the dog")) == [int(i) for i in layer(["the"]).numpy()[0]] + [1, 1]
    vocabulary = read_vocabulary(_file(tmp_path, ["", "the", "cat"]))  # no OOV token: "" is [UNK]
    assert vocabulary.tokens == ("[UNK]", "the", "cat") and vocabulary.unk_id == 0


def test_a_tokenizer_word_index_with_an_unk_oov_token_leaves_id_0_to_padding(tmp_path):
    # Tokenizer(oov_token="[UNK]").word_index: the OOV token is id 1, id 0 is what pad_sequences pads with.
    vocabulary = read_vocabulary(_file(tmp_path, {"[UNK]": 1, "the": 2, "cat": 3}))
    assert vocabulary.tokens == ("", "[UNK]", "the", "cat") and vocabulary.unk_id == 1


def test_a_tokenizer_word_index_mapping_puts_unk_at_the_unused_id_0(tmp_path):
    word_index = {"e": 1, "t": 2, " ": 3, "a": 4}
    vocabulary = read_vocabulary(_file(tmp_path, word_index))
    assert vocabulary.tokens == ("[UNK]", "e", "t", " ", "a") and vocabulary.level == "char"


def test_rnnserve_s_own_format_keeps_its_level(tmp_path):
    vocabulary = read_vocabulary(_file(tmp_path, {"level": "word", "tokens": ["[UNK]", "a", "b"]}))
    assert (vocabulary.tokens, vocabulary.level) == (("[UNK]", "a", "b"), "word")


@pytest.mark.parametrize(
    "content, message",
    [
        (
            {"a": "1"},
            r"maps 'a' to \"1\"; a \{token: id\} vocabulary maps every token to a non-negative integer",
        ),
        (
            {"a": 1, "b": 3},
            r"has no token for id\(s\) \[2\]; a \{token: id\} vocabulary needs every id from 1 to 3",
        ),
        ({"a": 1, "b": 1}, r"maps both 'a' and 'b' to id 1"),
        (["[UNK]", "a", 7], r"the token of id 2 is a number, not a string"),
        (["a", "b"], r"has 'a' at id 0; a language model's vocabulary has the unknown token '\[UNK\]'"),
        (
            ["", "a", "[UNK]"],
            r"has '' at id 0 and '\[UNK\]' at id 2; .* at id 0, or the padding token '' at id 0",
        ),
        (["[UNK]", "a", "a"], r"lists the token 'a' twice"),
        (42, r"holds a number; expected \{\"level\": \"char\"\|\"word\", \"tokens\""),
        ("not json", r"is not a JSON file \(Expecting value: line 1 column 1 \(char 0\)\); expected"),
        ({"level": "byte", "tokens": ["[UNK]"]}, r"has level \"byte\"; expected \"char\" or \"word\""),
    ],
)
def test_a_bad_vocabulary_says_what_was_expected_and_what_the_file_holds(tmp_path, content, message):
    with pytest.raises(UserError, match=message):
        read_vocabulary(_file(tmp_path, content))


def test_the_cli_reports_a_bad_vocabulary_in_one_line(tmp_path):
    line = user_error_line(
        run_rnnserve(
            "export", "--keras-model", tmp_path / "lm.keras", "--vocab", _file(tmp_path, [["a"]]),
            "--export-base", tmp_path / "base",
        )
    )  # fmt: skip
    assert (
        line
        == f"rnnserve export: error: {tmp_path / 'vocab.json'}: the token of id 0 is a list, not a string."
    )
