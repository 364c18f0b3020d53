"""A language model that reads text through its own `TextVectorization` gets the LM contract.

The model is `text → TextVectorization(output_mode="int") → Embedding →
LSTM/GRU → Dense(V)`, at character level (`split="character"`) and at word
level (`split="whitespace"`, Keras' default standardization), exported
through the CLI with no `--vocab`. The oracles are Keras': the model's own
logits on the same text equal `serving_default`'s on the layer's own ids;
`encode` gives the layer's own ids (standardized, unknown → `[UNK]`, id 1);
greedy `generate_text` equals re-running the Keras model on the growing
text. Options whose text the export cannot reproduce are refused in one
line saying what to use.
"""

import json

import keras
import numpy as np
import tensorflow as tf

from tests.export.artifacts import load_savedmodel, run_rnnserve, user_error_line

CORPUS = ["the cat sat on the mat", "a dog sat by the door", "the dog ran to the cat"]


def _language_model(vectorizer, text_shape, recurrent):
    keras.utils.set_random_seed(11)
    vectorizer.adapt(CORPUS)
    size = vectorizer.vocabulary_size()
    text = keras.Input(text_shape, dtype="string", name="text")
    x = keras.layers.Embedding(size, 6, mask_zero=True)(vectorizer(text))  # id 0 is the padding token
    x = recurrent(x)
    model = keras.Model(text, keras.layers.Dense(size)(x), name="text_lm")
    for weight in model.weights:
        weight.assign(np.random.default_rng(2).normal(0.0, 0.7, weight.shape))
    return model


def _export(tmp_path, model, *flags):
    model.save(tmp_path / "lm.keras")
    return run_rnnserve(
        "export", "--keras-model", tmp_path / "lm.keras", "--export-base", tmp_path / "base", *flags
    )  # fmt: skip


def _exported(tmp_path, model):
    result = _export(tmp_path, model)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr and result.stdout.splitlines() == [str(tmp_path / "base" / "1")]
    with open(tmp_path / "base" / "1" / "assets.extra" / "rnnserve.json", encoding="utf-8") as f:
        return load_savedmodel(str(tmp_path / "base" / "1")).signatures, json.load(f)


def _greedy_text(signatures, prompts, count):
    return [
        text.decode("utf-8")
        for text in signatures["generate_text"](
            prompt=tf.constant(prompts),
            max_new_tokens=np.int32(count),
            temperature=np.float32(0),
            top_k=np.int32(0),
            seed=np.int64(0),
        )["text"].numpy()
    ]


def _keras_greedy_text(model, vocabulary, prompt, count, separator, text_shape):
    """Greedy continuation of one prompt by re-running the Keras model on the growing text."""
    text, continuation = prompt, ""
    for _ in range(count):
        text_input = np.array([text], dtype=object).reshape((1, *text_shape))
        last = np.array(model(text_input, training=False))[0, -1]  # (V,)
        last[:2] = -np.inf  # padding and [UNK] are never generated
        piece = separator + vocabulary[int(np.argmax(last))]
        text, continuation = text + piece, continuation + piece
    return continuation


def _check_logits_and_encode(signatures, model, vectorizer, texts, model_input):
    ids = vectorizer(tf.constant(texts)).numpy().astype(np.int32)  # the layer's own ids (B, T)
    logits = signatures["serving_default"](tokens=tf.constant(ids))["logits"].numpy()
    real = ids != 0  # the padding after a shorter row is masked by Keras, and not text
    expected = np.asarray(model(model_input, training=False))
    np.testing.assert_allclose(logits[real], expected[real], atol=1e-5, rtol=0)
    encoded = signatures["encode"](text=tf.constant(texts))
    np.testing.assert_array_equal(encoded["tokens"].numpy(), ids)
    np.testing.assert_array_equal(encoded["lengths"].numpy(), (ids != 0).sum(axis=1))
    return ids


def test_a_character_level_text_vectorization_language_model_exports_the_lm_contract(tmp_path):
    vectorizer = keras.layers.TextVectorization(split="character", standardize="lower", output_mode="int")
    model = _language_model(vectorizer, (1,), keras.layers.LSTM(8, return_sequences=True))
    signatures, metadata = _exported(tmp_path, model)
    assert {"step", "generate", "generate_text", "encode", "decode"} <= set(signatures)
    assert (metadata["unk_id"], metadata["padding_id"], metadata["vocab_level"]) == (1, 0, "char")

    texts = ["The Cat!", "a dog  "]  # upper case is lowered by the layer; "!" is unknown
    ids = _check_logits_and_encode(signatures, model, vectorizer, texts, np.array([[t] for t in texts]))
    assert ids[0, -1] == 1  # "!" → [UNK]
    vocabulary, prompts = vectorizer.get_vocabulary(), ["the ", "A do"]
    expected = [_keras_greedy_text(model, vocabulary, prompt, 5, "", (1,)) for prompt in prompts]
    assert _greedy_text(signatures, prompts, 5) == expected


def test_a_word_level_text_vectorization_language_model_exports_the_lm_contract(tmp_path):
    vectorizer = keras.layers.TextVectorization(output_mode="int")  # lower + strip punctuation, whitespace
    model = _language_model(vectorizer, (), keras.layers.GRU(8, return_sequences=True))
    signatures, metadata = _exported(tmp_path, model)
    assert metadata["vocab_level"] == "word" and metadata["text_vectorization"] == {
        "standardize": "lower_and_strip_punctuation", "split": "whitespace", "output_sequence_length": None,
    }  # fmt: skip

    texts = ["The cat, sat on", "a zebra ran to"]  # "zebra" is unknown
    ids = _check_logits_and_encode(signatures, model, vectorizer, texts, np.array(texts))
    assert ids[1, 1] == 1
    vocabulary = vectorizer.get_vocabulary()
    expected = [_keras_greedy_text(model, vocabulary, text, 4, " ", ()) for text in texts]
    assert _greedy_text(signatures, texts, 4) == expected  # each word after a space: it appends to the prompt
    decoded = signatures["decode"](tokens=tf.constant(ids))["text"].numpy()
    assert decoded[0].decode("utf-8") == " the cat sat on"


def test_a_text_vectorization_the_export_cannot_reproduce_is_refused_in_one_line(tmp_path):
    vectorizer = keras.layers.TextVectorization(ngrams=2, output_mode="int", name="words")
    model = _language_model(vectorizer, (), keras.layers.LSTM(4, return_sequences=True))
    line = user_error_line(_export(tmp_path, model, "--contract", "language-model"))
    assert line.startswith("rnnserve export: error: Cannot export layer `words` (TextVectorization)")
    assert (
        "ngrams are not tokens one after another; a language model's TextVectorization needs ngrams=None"
        in line
    )
