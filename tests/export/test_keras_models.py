"""Keras models that are not chain language models export too, each under the right contract.

- Classifiers (one reading text through its own `TextVectorization`),
  Bidirectional encoders, Conv1D + LSTM and multi-input models get one
  `serving_default` whose inputs and outputs carry the model's own
  names, and whose outputs are the model's (the oracle: calling the Keras
  model).
- A language model ending in `Dense(V, activation="softmax")` gets the
  language-model signatures; its draws follow the model's own next-token
  distribution (Pearson's chi-square against the Keras model's
  probabilities, as tests/export/test_sampling.py does for the picker), and
  greedy is their argmax.
- A language model whose first layer is a `StringLookup` needs no --vocab.
"""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from rnnserve.training.export import export_keras_model
from tests.export.artifacts import load_savedmodel
from tests.export.test_sampling import CRITICAL

V = 6
ROWS = 20_000


def _classifier():
    words = keras.Input((None,), dtype="int32", name="words")
    x = keras.layers.GRU(5)(keras.layers.Embedding(V, 4)(words))
    return keras.Model(words, keras.layers.Dense(3, name="label")(x), name="classifier")


def _bidirectional_encoder():
    tokens = keras.Input((None,), dtype="int32", name="tokens")
    x = keras.layers.Bidirectional(keras.layers.LSTM(4, return_sequences=True))(
        keras.layers.Embedding(V, 4)(tokens)
    )
    return keras.Model(tokens, keras.layers.Dense(2, name="tags")(x), name="tagger")


def _conv_lstm():
    signal = keras.Input((None, 3), name="signal")
    x = keras.layers.Conv1D(4, 3, padding="causal")(signal)
    return keras.Model(signal, keras.layers.LSTM(5, name="summary")(x), name="conv_lstm")


def _two_inputs():
    words = keras.Input((None,), dtype="int32", name="words")
    extra = keras.Input((2,), name="extra")
    x = keras.layers.LSTM(4)(keras.layers.Embedding(V, 3)(words))
    score = keras.layers.Dense(1, name="score")(keras.layers.Concatenate()([x, extra]))
    return keras.Model([words, extra], score, name="two_inputs")


def _text_classifier():
    review = keras.Input((1,), dtype="string", name="review")
    vectorize = keras.layers.TextVectorization(max_tokens=V, output_sequence_length=5)
    vectorize.adapt(["the cat sat", "a dog ran", "the dog sat"])
    x = keras.layers.LSTM(4)(keras.layers.Embedding(V, 3)(vectorize(review)))
    return keras.Model(review, keras.layers.Dense(2, name="sentiment")(x), name="text_classifier")


MODELS = {"classifier": _classifier, "bidirectional": _bidirectional_encoder, "conv_lstm": _conv_lstm,
          "two_inputs": _two_inputs, "text_classifier": _text_classifier}  # fmt: skip


def _example(model, rng):
    example = {}
    for tensor in model.inputs:
        shape = [3 if size is None else size for size in tensor.shape]
        shape[0] = 2
        if "string" in str(tensor.dtype):
            example[tensor.name] = np.array([["the cat ran"], ["zebra sat"]], dtype=object)
        elif "int" in str(tensor.dtype):
            example[tensor.name] = rng.integers(0, V, shape).astype("int32")
        else:
            example[tensor.name] = rng.normal(size=shape).astype("float32")
    return example


@pytest.mark.parametrize("name", sorted(MODELS))
def test_a_model_that_is_not_a_language_model_exports_serving_default_of_its_own_names(name, tmp_path):
    model = MODELS[name]()
    model.save(tmp_path / "model.keras")
    notes = []
    version = export_keras_model(tmp_path / "model.keras", None, tmp_path / "base", notify=notes.append)
    assert len(notes) == 1 and "not as a language model" in notes[0]

    signatures = load_savedmodel(version).signatures
    assert list(signatures) == ["serving_default"]
    serving = signatures["serving_default"]
    example = _example(model, np.random.default_rng(0))
    assert sorted(serving.structured_input_signature[1]) == sorted(example)
    outputs = serving(**{key: tf.constant(value) for key, value in example.items()})
    values = [example[tensor.name] for tensor in model.inputs]
    expected = model(values[0] if len(values) == 1 else values, training=False)
    assert list(outputs) == [model.layers[-1].name]
    np.testing.assert_allclose(next(iter(outputs.values())).numpy(), np.asarray(expected), atol=1e-5, rtol=0)


def _softmax_language_model():
    keras.utils.set_random_seed(3)
    model = keras.Sequential(
        [
            keras.Input((None,), dtype="int32"),
            keras.layers.Embedding(V, 4),
            keras.layers.LSTM(5, return_sequences=True),
            keras.layers.Dense(V, activation="softmax"),
        ]
    )
    for weight in model.weights:  # spread the distribution so the test can tell it apart
        weight.assign(np.random.default_rng(4).normal(0.0, 0.8, weight.shape))
    return model


def _generate(signatures, prompt, rows, temperature, seed=9):
    out = signatures["generate"](
        tokens=tf.constant(np.tile(prompt, (rows, 1))),
        state=tf.zeros((rows, 10)),  # LSTM h, c
        max_new_tokens=np.int32(1),
        temperature=np.float32(temperature),
        top_k=np.int32(0),
        seed=np.int64(seed),
    )
    return out["tokens"].numpy()[:, 0]


def test_a_softmax_language_model_samples_its_own_distribution_and_greedy_is_its_argmax(tmp_path):
    model = _softmax_language_model()
    model.save(tmp_path / "lm.keras")
    (tmp_path / "vocab.json").write_text(json.dumps(["[UNK]", *"abcde"]))
    signatures = load_savedmodel(
        export_keras_model(tmp_path / "lm.keras", tmp_path / "vocab.json", tmp_path / "base")
    ).signatures
    prompt = np.array([[1, 4, 2]], np.int32)
    probabilities = np.asarray(model(prompt, training=False))[0, -1].astype(np.float64)  # (V,)
    expected = probabilities.copy()
    expected[0] = 0.0  # [UNK] is never generated
    expected /= expected.sum()

    counts = np.bincount(_generate(signatures, prompt, ROWS, temperature=1.0), minlength=V)
    assert counts[0] == 0
    chi2 = ((counts[1:] - ROWS * expected[1:]) ** 2 / (ROWS * expected[1:])).sum()
    assert chi2 < CRITICAL[V - 2], (chi2, counts, np.round(ROWS * expected))
    assert set(_generate(signatures, prompt, 4, temperature=0.0)) == {int(np.argmax(expected))}


def test_a_language_model_with_its_own_string_lookup_needs_no_vocab(tmp_path):
    chars = keras.Input((None,), dtype="string", name="chars")
    ids = keras.layers.StringLookup(vocabulary=list("abcde"), mask_token=None)(chars)
    x = keras.layers.GRU(4, return_sequences=True)(keras.layers.Embedding(V, 3)(ids))
    model = keras.Model(chars, keras.layers.Dense(V)(x), name="lookup_lm")
    model.save(tmp_path / "lm.keras")
    version = export_keras_model(tmp_path / "lm.keras", None, tmp_path / "base")

    signatures = load_savedmodel(version).signatures
    text = np.array([list("abca"), list("edzb")])  # "z" is outside the vocabulary: [UNK]
    ids = np.array([[1, 2, 3, 1], [5, 4, 0, 2]], np.int32)
    logits = signatures["serving_default"](tokens=tf.constant(ids))["logits"].numpy()
    np.testing.assert_allclose(logits, np.asarray(model(text, training=False)), atol=1e-5, rtol=0)
    encoded = signatures["encode"](text=tf.constant(["abca", "edzb"]))["tokens"].numpy()
    np.testing.assert_array_equal(encoded, ids)
