"""The fused path inside Keras and TF machinery: `model.fit` trains exactly
like the cell path, `.keras` files round-trip, and SavedModels that use it
(inference and training-mode graphs) load and run in a process importing no
project code, through TF1's `loader.load` as TF Serving's C++ loader does."""

import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

from rnnserve.models import build_language_model

VOCAB = 13


def _language_models(cell, **kwargs):
    fused = build_language_model(VOCAB, cell=cell, units=8, embedding_dim=5, implementation="fused", **kwargs)
    reference = build_language_model(
        VOCAB, cell=cell, units=8, embedding_dim=5, implementation="cell", **kwargs
    )
    reference.set_weights(fused.get_weights())
    return fused, reference


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_fit_follows_the_same_trajectory_as_the_cell_path(cell, rng):
    fused, reference = _language_models(cell, num_layers=2)
    tokens = rng.integers(1, VOCAB, size=(8, 10)).astype("int32")
    targets = np.roll(tokens, -1, axis=1)
    histories = []
    for model in (fused, reference):
        model.compile(
            optimizer=keras.optimizers.SGD(0.5),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        )
        histories.append(model.fit(tokens, targets, batch_size=4, epochs=2, shuffle=False, verbose=0))
    np.testing.assert_allclose(histories[0].history["loss"], histories[1].history["loss"], rtol=1e-5)
    assert histories[0].history["loss"][-1] < histories[0].history["loss"][0]
    for ours, theirs in zip(fused.get_weights(), reference.get_weights(), strict=True):
        np.testing.assert_allclose(ours, theirs, atol=1e-5)


def test_keras_file_round_trip_keeps_implementation_and_predictions(tmp_path, rng):
    model = build_language_model(VOCAB, cell="peephole_lstm", units=8, embedding_dim=5, num_layers=2)
    model.save(tmp_path / "lm.keras")
    loaded = keras.models.load_model(tmp_path / "lm.keras")
    assert loaded.get_layer("recurrent").implementation == "auto"
    tokens = rng.integers(0, VOCAB, size=(3, 6)).astype("int32")
    np.testing.assert_allclose(loaded.predict(tokens, verbose=0), model.predict(tokens, verbose=0), atol=1e-6)


# Runs in a fresh interpreter with an empty PYTHONPATH: only TensorFlow.
TF1_LOADER = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import tensorflow as tf
    path, tokens_file, out_file = sys.argv[1:]
    tokens = np.load(tokens_file)
    results = {}
    with tf.compat.v1.Session(graph=tf.Graph()) as session:
        meta = tf.compat.v1.saved_model.loader.load(session, ["serve"], path)
        for name in ("serving_default", "training_mode"):
            signature = meta.signature_def[name]
            (input_info,) = signature.inputs.values()
            (output_info,) = signature.outputs.values()
            results[name] = session.run(output_info.name, {input_info.name: tokens}).tolist()
    assert not any(m.split(".")[0] in ("models", "training", "serving") for m in sys.modules)
    json.dump(results, open(out_file, "w"))
    """
)


@pytest.mark.slow
def test_export_loads_and_runs_in_the_tf1_loader_without_project_code(tmp_path, rng):
    model = build_language_model(VOCAB, cell="gru", units=8, embedding_dim=5, num_layers=2)
    tokens = rng.integers(0, VOCAB, size=(2, 6)).astype("int32")
    spec = tf.TensorSpec((None, None), tf.int32, name="tokens")
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint("serving_default", lambda t: model(t, training=False), input_signature=[spec])
    archive.add_endpoint("training_mode", lambda t: model(t, training=True), input_signature=[spec])
    archive.write_out(str(tmp_path / "export" / "1"), verbose=False)
    np.save(tmp_path / "tokens.npy", tokens)
    script = tmp_path / "load.py"
    script.write_text(TF1_LOADER)
    env = {**os.environ, "PYTHONPATH": ""}
    subprocess.run(
        [
            sys.executable,
            str(script),
            str(tmp_path / "export" / "1"),
            str(tmp_path / "tokens.npy"),
            str(tmp_path / "out.json"),
        ],
        check=True,
        cwd=tmp_path,
        env=env,
        timeout=120,
    )
    results = json.loads((tmp_path / "out.json").read_text())
    expected = model(tokens, training=False).numpy()
    np.testing.assert_allclose(results["serving_default"], expected, atol=1e-5)
    np.testing.assert_allclose(results["training_mode"], expected, atol=1e-5)
