"""What a user gets wrong when exporting a Keras file: one line, exit status 2, and the way out.

Run through `rnnserve export` as a user runs it: a layer class Keras cannot
find is named, and `--custom-objects MODULE` then exports the model (safe
mode stays on: a Python `Lambda` is still refused); a file that is not a
Keras model says what it is; a file as `--export-base` is one line; a run
interrupted before `model.keras` points at `--resume` and
`--from-checkpoint`, which exports the newest checkpoint.
"""

import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from rnnserve.errors import UserError
from rnnserve.models import build_language_model
from rnnserve.training.export import export_run
from rnnserve.training.export.keras_files import load_keras_file
from rnnserve.training.vocab import Vocabulary
from tests.export.artifacts import (
    CORPUS,
    keras_logits,
    load_savedmodel,
    run_rnnserve,
    user_error_line,
    write_run,
)

SCALE_MODULE = '''
import keras


class Scale(keras.layers.Layer):
    """Multiplies its input by a constant."""

    def __init__(self, factor=2.0, **kwargs):
        super().__init__(**kwargs)
        self.factor = factor

    def call(self, x):
        return x * self.factor

    def get_config(self):
        return {**super().get_config(), "factor": self.factor}
'''


def _import_scale_module(path):
    import importlib.util

    (path / "scale_layers.py").write_text(SCALE_MODULE)
    spec = importlib.util.spec_from_file_location("scale_layers", path / "scale_layers.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_an_unregistered_layer_is_named_and_custom_objects_exports_it(tmp_path):
    scale = _import_scale_module(tmp_path)
    inputs = keras.Input((4,), name="features")
    model = keras.Model(inputs, keras.layers.Dense(2, name="out")(scale.Scale(3.0)(inputs)))
    model.save(tmp_path / "model.keras")

    args = ("export", "--keras-model", tmp_path / "model.keras", "--export-base", tmp_path / "base")
    line = user_error_line(run_rnnserve(*args, cwd=tmp_path))
    assert line == (
        "rnnserve export: error: the model uses layer class 'Scale', which is not registered; "
        "import the module that defines it with --custom-objects scale_layers"
    )
    result = run_rnnserve(*args, "--custom-objects", "scale_layers", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    features = np.arange(8, dtype=np.float32).reshape(2, 4)
    served = load_savedmodel(result.stdout.strip()).signatures["serving_default"](features=features)["out"]
    np.testing.assert_allclose(served.numpy(), np.asarray(model(features)), atol=1e-5, rtol=0)


def test_a_python_lambda_is_refused_in_safe_mode(tmp_path):
    inputs = keras.Input((3,))
    keras.Model(inputs, keras.layers.Lambda(lambda x: x * 2)(inputs)).save(tmp_path / "lambda.keras")
    with pytest.raises(UserError, match=r"has a Lambda layer holding Python code, which is not loaded"):
        load_keras_file(tmp_path / "lambda.keras")


@pytest.mark.parametrize(
    "name, content, says",
    [
        (
            "notes.keras",
            b"just some text\n",
            "is not a Keras model file: expected a .keras zip or an HDF5 .h5",
        ),
        ("missing.keras", None, "does not exist; pass a Keras model file"),
    ],
)
def test_a_file_that_is_not_a_keras_model_says_so(tmp_path, name, content, says):
    if content is not None:
        (tmp_path / name).write_bytes(content)
    with pytest.raises(UserError, match=says):
        load_keras_file(tmp_path / name)


def test_the_cli_says_a_text_file_is_not_a_keras_model_and_a_file_is_not_an_export_base(tmp_path):
    (tmp_path / "notes.keras").write_text("just some text\n")
    line = user_error_line(
        run_rnnserve("export", "--keras-model", tmp_path / "notes.keras", "--export-base", tmp_path / "b")
    )
    assert line.startswith(f"rnnserve export: error: {tmp_path / 'notes.keras'} is not a Keras model file")
    line = user_error_line(
        run_rnnserve(
            "export", "--keras-model", tmp_path / "m.keras", "--export-base", tmp_path / "notes.keras"
        )
    )
    assert line == (
        f"rnnserve export: error: {tmp_path / 'notes.keras'} is a file, not a directory of SavedModel "
        "versions; pass another --export-base."
    )


def test_an_interrupted_run_points_at_resume_and_exports_its_newest_checkpoint(tmp_path):
    keras.utils.set_random_seed(5)
    vocabulary = Vocabulary.build(CORPUS)
    model = build_language_model(len(vocabulary), cell="gru", units=4, embedding_dim=3)
    run_dir = tmp_path / "run"
    write_run(run_dir, model, vocabulary, model_config={"vocab_size": len(vocabulary), "cell": "gru",
                                                        "units": 4, "embedding_dim": 3})  # fmt: skip
    os.makedirs(run_dir / "checkpoints")
    os.replace(run_dir / "model.keras", run_dir / "checkpoints" / "epoch-0002.keras")

    args = ("export", "--run", run_dir, "--export-base", tmp_path / "base")
    line = user_error_line(run_rnnserve(*args))
    assert line == (
        f"rnnserve export: error: {run_dir} has no model.keras: its training did not finish. Continue it "
        f"with `rnnserve train charlm --resume {run_dir}`, or export its newest checkpoint (after epoch 2) "
        f"with `rnnserve export --run {run_dir} --from-checkpoint`."
    )
    result = run_rnnserve(*args, "--from-checkpoint")
    assert result.returncode == 0, result.stderr
    tokens = np.array([[1, 2, 3]], np.int32)
    logits = load_savedmodel(result.stdout.strip()).signatures["serving_default"](tokens=tf.constant(tokens))
    np.testing.assert_allclose(logits["logits"].numpy(), keras_logits(model, tokens), atol=1e-5, rtol=0)
    with open(os.path.join(result.stdout.strip(), "assets.extra", "rnnserve.json"), encoding="utf-8") as f:
        assert json.load(f)["source"]["checkpoint"] == str(run_dir / "checkpoints" / "epoch-0002.keras")


def test_a_stateful_checkpoint_exports_as_its_stateless_twin(tmp_path):
    """A `--batching sequential` run checkpoints a stateful model (state in variables, a fixed
    batch); the export rebuilds the run's stateless model with the checkpoint's weights."""
    keras.utils.set_random_seed(6)
    vocabulary = Vocabulary.build(CORPUS)
    config = {"vocab_size": len(vocabulary), "cell": "lstm", "units": 4, "embedding_dim": 3}
    stateful = build_language_model(**config, stateful=True, batch_size=2)
    run_dir = tmp_path / "run"
    write_run(run_dir, stateful, vocabulary, model_config=config)
    os.makedirs(run_dir / "checkpoints")
    os.replace(run_dir / "model.keras", run_dir / "checkpoints" / "epoch-0001.keras")

    version = export_run(run_dir, tmp_path / "base", from_checkpoint=True)
    tokens = np.array([[1, 2, 3, 4], [5, 6, 7, 8]], np.int32)
    stateless = build_language_model(**config)
    for mine, theirs in zip(stateless.trainable_weights, stateful.trainable_weights, strict=True):
        mine.assign(theirs)
    logits = load_savedmodel(version).signatures["serving_default"](tokens=tf.constant(tokens))["logits"]
    np.testing.assert_allclose(logits.numpy(), keras_logits(stateless, tokens), atol=1e-5, rtol=0)
