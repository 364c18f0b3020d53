"""Keras language models export under the same contract, or are refused by name.

A `Sequential` of Keras' own `Embedding`, `LSTM`, `GRU`, `SimpleRNN`,
`Dropout` and `Dense`, trained a few steps, is exported with
`rnnserve export --keras-model` (a subprocess, as a user runs it); its
`serving_default` logits equal the original model's and greedy `generate`
equals Python greedy decoding with the original model. A
`keras.layers.RNN` over one of this project's cells converts too. Anything
else is refused by `as_language_model` with an error naming the layer
(`export_keras_model` then exports a plain `serving_default`:
tests/export/test_keras_models.py).
"""

import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from rnnserve.errors import UserError
from rnnserve.models import PeepholeLSTMCell
from rnnserve.training.export import as_language_model, export_keras_model
from rnnserve.training.vocab import Vocabulary
from tests.export.artifacts import CORPUS, keras_logits, load_savedmodel, python_greedy, run_rnnserve

VOCAB = Vocabulary.build(CORPUS)
V = len(VOCAB)


def _sequential(*layers):
    return keras.Sequential([keras.Input((None,), dtype="int32"), *layers])


def _builtin_model():
    return _sequential(
        keras.layers.Embedding(V, 8),
        keras.layers.LSTM(8, return_sequences=True),
        keras.layers.GRU(7, return_sequences=True),
        keras.layers.SimpleRNN(6, return_sequences=True, activation="relu"),
        keras.layers.Dropout(0.1),
        keras.layers.Dense(V),
    )


def test_a_trained_keras_builtin_model_exports_with_its_own_logits(tmp_path):
    model = _builtin_model()
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    ids = np.random.default_rng(0).integers(1, V, (16, 11)).astype("int32")
    history = model.fit(ids[:, :-1], ids[:, 1:], batch_size=8, epochs=2, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]  # it did train
    model.save(tmp_path / "lm.keras")
    VOCAB.save(tmp_path / "vocab.json")

    result = run_rnnserve(
        "export", "--keras-model", tmp_path / "lm.keras", "--vocab", tmp_path / "vocab.json",
        "--export-base", tmp_path / "base",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(tmp_path / "base" / "1")

    signatures = load_savedmodel(str(tmp_path / "base" / "1")).signatures
    tokens = ids[:3, :9]
    logits = signatures["serving_default"](tokens=tf.constant(tokens))["logits"].numpy()
    np.testing.assert_allclose(logits, keras_logits(model, tokens), atol=1e-5, rtol=0)
    generated = signatures["generate"](
        tokens=tf.constant(tokens[:, :4]),
        state=tf.zeros((3, 8 + 8 + 7 + 6)),  # LSTM h, c + GRU h + SimpleRNN h
        max_new_tokens=np.int32(6),
        temperature=np.float32(0),
        top_k=np.int32(0),
        seed=np.int64(0),
    )["tokens"].numpy()
    np.testing.assert_array_equal(generated, python_greedy(model, tokens[:, :4], 6))
    with open(tmp_path / "base" / "1" / "assets.extra" / "rnnserve.json", encoding="utf-8") as f:
        metadata = json.load(f)
    assert (metadata["task"], metadata["cell"], metadata["layers"]) == ("keras", ["lstm", "gru", "rnn"], 3)
    assert metadata["state_size"] == 29 and metadata["source"]["keras_model"] == str(tmp_path / "lm.keras")


def test_a_keras_rnn_over_a_project_cell_converts_to_an_equal_chain():
    model = _sequential(
        keras.layers.Embedding(V, 5),
        keras.layers.RNN(PeepholeLSTMCell(6), return_sequences=True),
        keras.layers.Dense(V),
    )
    tokens = np.random.default_rng(1).integers(0, V, (2, 6)).astype("int32")
    chain = as_language_model(model)
    assert [type(layer).__name__ for layer in chain.layers] == [
        "InputLayer",
        "Embedding",
        "Recurrent",
        "Dense",
    ]
    np.testing.assert_allclose(keras_logits(chain, tokens), keras_logits(model, tokens), atol=1e-6, rtol=0)


def _refused(name):
    layers = {
        "conv": [keras.layers.Embedding(V, 4), keras.layers.Conv1D(4, 3, padding="causal", name="conv"),
                 keras.layers.LSTM(4, return_sequences=True), keras.layers.Dense(V)],
        "bidirectional": [keras.layers.Embedding(V, 4),
                          keras.layers.Bidirectional(keras.layers.LSTM(4, return_sequences=True), name="bidirectional"),
                          keras.layers.Dense(V)],
        "last_only": [keras.layers.Embedding(V, 4), keras.layers.GRU(4, name="last_only"), keras.layers.Dense(V)],
        "backwards": [keras.layers.Embedding(V, 4),
                      keras.layers.LSTM(4, return_sequences=True, go_backwards=True, name="backwards"),
                      keras.layers.Dense(V)],
        "masking": [keras.layers.Embedding(V, 4, mask_zero=True, name="masking"),
                    keras.layers.LSTM(4, return_sequences=True), keras.layers.Dense(V)],
        "relu_output": [keras.layers.Embedding(V, 4), keras.layers.LSTM(4, return_sequences=True),
                        keras.layers.Dense(V, activation="relu", name="relu_output")],
    }[name]  # fmt: skip
    return _sequential(*layers)


@pytest.mark.parametrize(
    "name", ["conv", "bidirectional", "last_only", "backwards", "masking", "relu_output"]
)
def test_unsupported_layers_are_refused_naming_the_layer(name):
    with pytest.raises(
        UserError, match=rf"Cannot export layer `{name}` \(\w+\).*Supported layers: Embedding"
    ):
        as_language_model(_refused(name))


def test_a_model_that_is_not_a_plain_chain_is_refused():
    tokens = keras.Input((None,), dtype="int32")
    shared = keras.layers.LSTM(4, return_sequences=True)
    x = shared(shared(keras.layers.Embedding(V, 4)(tokens)))  # one layer applied twice
    model = keras.Model(tokens, keras.layers.Dense(V)(x), name="twice")
    with pytest.raises(UserError, match="Model `twice` does not compute a plain chain"):
        as_language_model(model)


def test_a_vocabulary_of_another_size_is_refused(tmp_path):
    model = _sequential(
        keras.layers.Embedding(V + 1, 4),
        keras.layers.GRU(4, return_sequences=True),
        keras.layers.Dense(V + 1),
    )
    model.save(tmp_path / "lm.keras")
    VOCAB.save(tmp_path / "vocab.json")
    with pytest.raises(
        UserError, match=rf"vocabulary has {V} tokens but the model's Embedding input size is {V + 1}"
    ):
        export_keras_model(tmp_path / "lm.keras", tmp_path / "vocab.json", tmp_path / "base")
    assert not os.path.exists(tmp_path / "base") or os.listdir(tmp_path / "base") == []
