"""Keras 2 files (tf.keras / `tf_keras`) export and serve tf.keras's own numbers.

The files are written by `tf_keras` in a subprocess (it and Keras 3 do not
share a process), which also records the oracle: the logits tf.keras
computes for a probe batch and greedy continuations by re-running the tf.keras
model on the whole growing sequence. The exports are made the way a user
makes them and read back through the SavedModel. Two of the language
models are saved under the `mixed_float16` policy (an `.h5` and a
`.keras`), ending in the mixed-precision guide's float32 output layers.
"""

import json
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from rnnserve.training.export import export_keras_model
from rnnserve.training.export.keras2 import read_config as keras2_config
from tests.export.artifacts import build_once, load_savedmodel, run_rnnserve, shared_root, user_error_line
from tests.export.test_keras_file_errors import SCALE_MODULE

V = 12
TOKENS = ["[UNK]", *"abcdefghijk"]
GREEDY = 6
WRITE_KERAS2_FILES = """
import json, sys
import numpy as np
import tf_keras as k

out, V, greedy_count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
L = k.layers
rng = np.random.default_rng(0)


def randomized(model):
    for weight in model.weights:
        weight.assign(rng.normal(0.0, 0.6, weight.shape).astype("float32"))
    return model


def greedy(model, prompts, count):
    sequences = prompts.copy()
    for _ in range(count):
        last = model(sequences, training=False).numpy()[:, -1].astype("float64")
        last = np.log(last) if model.layers[-1].get_config().get("activation") == "softmax" else last
        last[:, 0] = -np.inf
        sequences = np.concatenate([sequences, last.argmax(-1)[:, None].astype("int32")], axis=1)
    return sequences[:, prompts.shape[1]:]


class Scale(L.Layer):
    def __init__(self, factor=2.0, **kwargs):
        super().__init__(**kwargs)
        self.factor = factor

    def call(self, x):
        return x * self.factor

    def get_config(self):
        return {**super().get_config(), "factor": self.factor}


models = {
    # An implicit InputLayer (batch_input_shape on the first layer), as tf.keras 2 tutorials write it.
    "lstm_lm.h5": k.Sequential([L.Embedding(V, 6, batch_input_shape=(None, None)),
                                L.LSTM(7, return_sequences=True), L.Dense(V)]),
    "gru_lm.keras": k.Sequential([k.Input((None,), dtype="int32"), L.Embedding(V, 5),
                                  L.GRU(6, return_sequences=True), L.SimpleRNN(4, return_sequences=True),
                                  L.TimeDistributed(L.Dense(V))]),
    "softmax_lm.h5": k.Sequential([k.Input((None,), dtype="int32"), L.Embedding(V, 5),
                                   L.GRU(6, return_sequences=True, reset_after=False),
                                   L.Dense(V, activation="softmax")]),
    "classifier.h5": k.Sequential([k.Input((None,), dtype="int32"), L.Embedding(V, 4), L.LSTM(5),
                                   L.Dense(3)]),
    "scaled.h5": k.Sequential([k.Input((None,), dtype="int32"), L.Embedding(V, 4), Scale(3.0),
                               L.GRU(5, return_sequences=True), L.Dense(V)]),
}


def mixed_precision(final):  # a language model built under the mixed_float16 policy, float32 logits
    k.mixed_precision.set_global_policy("mixed_float16")
    model = k.Sequential([k.Input((None,), dtype="int32"), L.Embedding(V, 6), L.LSTM(8, return_sequences=True),
                          L.GRU(7, return_sequences=True), *final()])
    k.mixed_precision.set_global_policy("float32")
    return model


# The two float32 outputs of the mixed-precision guide: a float32 Dense, or a float32 linear Activation.
models["mixed_lm.h5"] = mixed_precision(lambda: [L.Dense(V), L.Activation("linear", dtype="float32")])
models["mixed_lm.keras"] = mixed_precision(lambda: [L.Dense(V, dtype="float32")])
tokens = rng.integers(1, V, (3, 8)).astype("int32")
oracle = {"tokens": tokens}
for name, model in models.items():
    randomized(model).save(f"{out}/{name}")
    stem = name.split(".")[0]
    oracle[name.replace(".", "_") if stem == "mixed_lm" else stem] = model(tokens, training=False).numpy()
    if stem not in ("classifier", "scaled", "mixed_lm"):
        oracle[stem + "_greedy"] = greedy(model, tokens[:, :3], greedy_count)
np.savez(f"{out}/oracle.npz", **oracle)
print(json.dumps({"keras_version": k.__version__}))
"""


def _write_keras2_files(path):
    result = subprocess.run(
        [sys.executable, "-c", WRITE_KERAS2_FILES, str(path), str(V), str(GREEDY)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout.splitlines()[-1])["keras_version"].startswith("2.")
    (path / "vocab.json").write_text(json.dumps(TOKENS))  # StringLookup.get_vocabulary()'s format


@pytest.fixture
def keras2(tmp_path_factory):
    """The directory of the Keras 2 files, and the oracle tf.keras computed for them."""
    path = build_once(shared_root(tmp_path_factory), "keras2-files", _write_keras2_files)
    return path, dict(np.load(path / "oracle.npz"))


def _greedy(signatures, prompts, state_size):
    return signatures["generate"](
        tokens=tf.constant(prompts),
        state=tf.zeros((len(prompts), state_size)),
        max_new_tokens=np.int32(GREEDY),
        temperature=np.float32(0),
        top_k=np.int32(0),
        seed=np.int64(0),
    )["tokens"].numpy()


def _metadata(version_dir):
    with open(version_dir / "assets.extra" / "rnnserve.json", encoding="utf-8") as f:
        return json.load(f)


def test_a_keras2_h5_lstm_language_model_exports_through_the_cli_with_tf_keras_logits(keras2, tmp_path):
    path, oracle = keras2
    result = run_rnnserve(
        "export", "--keras-model", path / "lstm_lm.h5", "--vocab", path / "vocab.json",
        "--export-base", tmp_path / "base",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr and result.stdout.strip() == str(tmp_path / "base" / "1")
    signatures = load_savedmodel(str(tmp_path / "base" / "1")).signatures
    logits = signatures["serving_default"](tokens=tf.constant(oracle["tokens"]))["logits"].numpy()
    np.testing.assert_allclose(logits, oracle["lstm_lm"], atol=1e-5, rtol=0)
    generated = _greedy(signatures, oracle["tokens"][:, :3], 2 * 7)  # LSTM h, c
    np.testing.assert_array_equal(generated, oracle["lstm_lm_greedy"])
    assert _metadata(tmp_path / "base" / "1")["cell"] == "lstm"


def test_a_keras2_dot_keras_gru_language_model_serves_tf_keras_logits(keras2, tmp_path):
    path, oracle = keras2
    version = export_keras_model(path / "gru_lm.keras", path / "vocab.json", tmp_path / "base")
    signatures = load_savedmodel(version).signatures
    logits = signatures["serving_default"](tokens=tf.constant(oracle["tokens"]))["logits"].numpy()
    np.testing.assert_allclose(logits, oracle["gru_lm"], atol=1e-5, rtol=0)
    np.testing.assert_array_equal(
        _greedy(signatures, oracle["tokens"][:, :3], 6 + 4), oracle["gru_lm_greedy"]
    )
    text = signatures["generate_text"](
        prompt=tf.constant(["abc"]),
        max_new_tokens=np.int32(3),
        temperature=np.float32(0),
        top_k=np.int32(0),
        seed=np.int64(0),
    )["text"].numpy()[0]
    assert len(text.decode("utf-8")) == 3  # a char vocabulary: one character per token


def test_a_keras2_softmax_language_model_serves_logits_whose_softmax_is_tf_keras_probabilities(
    keras2, tmp_path
):
    path, oracle = keras2
    version = export_keras_model(path / "softmax_lm.h5", path / "vocab.json", tmp_path / "base")
    signatures = load_savedmodel(version).signatures
    logits = signatures["serving_default"](tokens=tf.constant(oracle["tokens"]))["logits"].numpy()
    np.testing.assert_allclose(tf.nn.softmax(logits).numpy(), oracle["softmax_lm"], atol=1e-6, rtol=0)
    np.testing.assert_array_equal(
        _greedy(signatures, oracle["tokens"][:, :3], 6), oracle["softmax_lm_greedy"]
    )


def test_a_keras2_classifier_exports_a_plain_serving_default_with_tf_keras_outputs(keras2, tmp_path):
    path, oracle = keras2
    notes = []
    version = export_keras_model(path / "classifier.h5", None, tmp_path / "base", notify=notes.append)
    assert len(notes) == 1 and "return_sequences=True" in notes[0]
    signature = load_savedmodel(version).signatures["serving_default"]
    ((input_name, spec),) = signature.structured_input_signature[1].items()
    ((output_name, output),) = signature(**{input_name: tf.constant(oracle["tokens"], spec.dtype)}).items()
    np.testing.assert_allclose(output.numpy(), oracle["classifier"], atol=1e-5, rtol=0)
    assert list(_metadata(tmp_path / "base" / "1")["signatures"]) == ["serving_default"]
    assert output_name == "dense" or output_name.startswith("dense")


def test_a_keras2_model_with_its_own_layer_needs_custom_objects_and_then_serves_tf_keras_logits(
    keras2, tmp_path
):
    path, oracle = keras2
    (tmp_path / "scale_layers.py").write_text(SCALE_MODULE)  # the layer, written for Keras 3
    args = ("export", "--keras-model", path / "scaled.h5", "--vocab", path / "vocab.json",
            "--export-base", tmp_path / "base")  # fmt: skip
    line = user_error_line(run_rnnserve(*args, cwd=tmp_path))
    assert line == (
        "rnnserve export: error: the model uses layer class 'Scale', which is not registered; "
        "import the module that defines it with --custom-objects MODULE"
    )
    result = run_rnnserve(*args, "--custom-objects", "scale_layers", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    signature = load_savedmodel(result.stdout.strip()).signatures["serving_default"]
    (output,) = signature(**{next(iter(signature.structured_input_signature[1])): oracle["tokens"]}).values()
    np.testing.assert_allclose(output.numpy(), oracle["scaled"], atol=1e-5, rtol=0)


# float16 keeps 11 significant bits: the model computes in float16, the export its recurrent layers in
# float32 (measured: at most 2e-3 apart on these logits, of size 3).
FLOAT16_TOLERANCE = 1e-2


@pytest.mark.parametrize("name", ["mixed_lm.h5", "mixed_lm.keras"])
def test_a_keras2_mixed_float16_language_model_exports_through_the_cli_with_tf_keras_logits(
    keras2, tmp_path, name
):
    path, oracle = keras2
    config = json.dumps(keras2_config(path / name))
    assert '"mixed_float16"' in config  # saved under the mixed-precision policy
    result = run_rnnserve(
        "export", "--keras-model", path / name, "--vocab", path / "vocab.json", "--contract", "language-model",
        "--export-base", tmp_path / "base",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr and result.stdout.splitlines() == [str(tmp_path / "base" / "1")]
    signatures = load_savedmodel(str(tmp_path / "base" / "1")).signatures
    tokens = tf.constant(oracle["tokens"])
    expected = oracle[name.replace(".", "_")]
    logits = signatures["serving_default"](tokens=tokens)["logits"]
    assert logits.dtype == tf.float32
    np.testing.assert_allclose(logits.numpy(), expected, atol=FLOAT16_TOLERANCE, rtol=0)
    step = signatures["step"](tokens=tokens, state=tf.zeros((3, 2 * 8 + 7)))["logits"].numpy()
    np.testing.assert_allclose(step, expected, atol=FLOAT16_TOLERANCE, rtol=0)
    assert np.abs(expected).max() > 100 * FLOAT16_TOLERANCE  # the tolerance is small against the logits
