"""TF Serving's own loader on every export kind.

TF Serving loads a version with the C++ `tensorflow::LoadSavedModel` (tag
`serve`), replays `assets.extra/tf_serving_warmup_requests`, then runs a
signature with `Session::Run` by tensor name. `savedmodel_run.cc` (next to
this file) does exactly that; it is compiled here with g++ against the
TensorFlow wheel's headers and `libtensorflow_cc.so.2`, once per TensorFlow
version and source (cached in pytest's cache directory, so in the checkout).

For each export kind -- the five cells, two layers, a word vocabulary, a
`--keras-model` import of Keras' built-in layers, and the classify, seq2seq,
regress, condgen and hello tasks -- made with the CLI's own `main` as a user
makes them, in-process, with the smallest settings (8 units, one epoch of a
tiny corpus), once per session and shared by the xdist workers:

- the C++ program loads it and replays every warmup record (a failing record
  fails the load, as in TF Serving);
- the signatures it prints (alias, tensor name, dtype, shape) are those of
  the MetaGraphDef in saved_model.pb, read by Python's protobuf;
- every signature runs on requests made from the warmup records: as they
  are, with the batch doubled, with sampling switched on where a signature
  samples, and with every scalar input sent with shape (1,), as REST clients
  send scalars (C++ `Session::Run` accepts that; Python's TF1 `Session.run`
  refuses it). The responses equal what `tf.saved_model.load` computes for
  the same values (scalars as scalars): floats to 1e-6, integers and strings
  exactly.

Outside CI without g++ this fails with one line saying so; it never skips.
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import json
import os
import shutil
import subprocess

import keras
import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.framework import types_pb2
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

from rnnserve import cli

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "savedmodel_run.cc")
WARMUP = os.path.join("assets.extra", "tf_serving_warmup_requests")
INIT_OP = "__saved_model_init_op"
FLOAT_TOLERANCE = 1e-6

# A tiny corpus: one epoch is a few batches.
CORPUS = "hello world, how are you? the quick brown fox jumps over the lazy dog.\n" * 60
LM = ["--embedding-dim", "8", "--seq-len", "16", "--batch-size", "8", "--val-fraction", "0.5"]
QUICK = ["--units", "8", "--epochs", "1", "--time-budget", "2", "--verbose", "0"]
# kind -> `rnnserve train` arguments (the --keras-model kind is made by `_keras_export`).
KINDS = {
    **{
        f"lm-{cell}": ["charlm", "--cell", cell, *LM]
        for cell in ("lstm", "gru", "rnn", "coupled_lstm", "peephole_lstm")
    },
    "lm-2layers": ["charlm", "--cell", "gru", "--layers", "2", *LM],
    "lm-word": ["charlm", "--level", "word", *LM],
    "keras-model": None,
    "classify": ["classify"],
    "seq2seq": ["seq2seq"],
    "regress": ["regress"],
    "condgen": ["condgen"],
    "hello": ["hello"],
}


# -- the program ------------------------------------------------------------------


def compile_command(output):
    """g++ with TensorFlow's own flags; --no-as-needed keeps libtensorflow_cc's session factory."""
    return [
        os.environ.get("CXX", "g++"), "-O1", "-w", SOURCE, *tf.sysconfig.get_compile_flags(), "-o", str(output),
        *tf.sysconfig.get_link_flags(), "-Wl,--no-as-needed", "-l:libtensorflow_cc.so.2",
        f"-Wl,-rpath,{tf.sysconfig.get_lib()}",
    ]  # fmt: skip


def cache_root(config, tmp_path_factory):
    if getattr(config, "cache", None) is not None:  # pytest's cache: .pytest_cache/d/ in the checkout
        return config.cache.mkdir("savedmodel_run")
    return tmp_path_factory.getbasetemp().parent  # -p no:cacheprovider


@pytest.fixture(scope="session")
def savedmodel_run(request, tmp_path_factory):
    """The compiled program, built once per TensorFlow version, source and compiler."""
    compiler = shutil.which(os.environ.get("CXX", "g++"))
    if compiler is None:
        pytest.fail(
            "the C++ loader test needs g++ to compile tests/export/savedmodel_run.cc "
            "against the TensorFlow wheel (apt-get install g++)",
            pytrace=False,
        )
    version = subprocess.run([compiler, "--version"], capture_output=True, text=True).stdout
    with open(SOURCE, "rb") as f:
        key = hashlib.sha256(f.read() + json.dumps([compile_command("x"), version]).encode()).hexdigest()[:16]
    root = cache_root(request.config, tmp_path_factory)
    binary = root / f"savedmodel_run-tf{tf.__version__}-{key}"
    with open(root / "compile.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one compile for all xdist workers
        if not binary.exists():
            partial = root / f".{binary.name}.{os.getpid()}"
            result = subprocess.run(compile_command(partial), capture_output=True, text=True, timeout=900)
            assert result.returncode == 0, f"g++ failed:\n{result.stderr[-6000:]}"
            os.replace(partial, binary)
    return binary


def run_program(binary, version_dir, requests=None, responses=None):
    """(printed JSON, responses or None); the program's stderr in the failure message."""
    args = [str(binary), str(version_dir)] + ([str(requests), str(responses)] if requests else [])
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    result = subprocess.run(args, capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, f"{' '.join(args)} exited {result.returncode}:\n{result.stderr[-4000:]}"
    printed = json.loads(result.stdout)
    if responses is None:
        return printed, None
    read = [
        predict_pb2.PredictResponse.FromString(r.numpy()) for r in tf.data.TFRecordDataset(str(responses))
    ]
    return printed, read


# -- the exports -------------------------------------------------------------------


def shared_root(tmp_path_factory):
    """A temp directory common to all xdist workers of this session."""
    base = tmp_path_factory.getbasetemp()
    root = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "cpp-loader-exports"
    root.mkdir(exist_ok=True)
    return root


def rnnserve(*args):
    """`rnnserve ARGS` through the CLI's `main`, in this process (no TensorFlow start-up per kind)."""
    args = [str(arg) for arg in args]
    assert cli.main(args) == 0, f"rnnserve {' '.join(args)} failed"


def _keras_export(path, tmp_path_factory):
    """`rnnserve export --keras-model` of a Sequential of Keras' built-in layers, on lm-lstm's vocabulary."""
    vocab = export_of("lm-lstm", tmp_path_factory).parent.parent / "run" / "vocab.json"
    size = len(json.loads(vocab.read_text(encoding="utf-8"))["tokens"])
    keras.utils.set_random_seed(5)
    model = keras.Sequential(
        [
            keras.Input((None,), dtype="int32"),
            keras.layers.Embedding(size, 8),
            keras.layers.LSTM(8, return_sequences=True),
            keras.layers.GRU(7, return_sequences=True),
            keras.layers.SimpleRNN(6, return_sequences=True),
            keras.layers.Dense(size),
        ]
    )
    model.save(path / "lm.keras")
    rnnserve("export", "--keras-model", path / "lm.keras", "--vocab", vocab, "--export-base", path / "export")


def write_corpus(root):
    path = root / "corpus.txt"
    if not path.exists():
        partial = root / f".corpus.txt.{os.getpid()}"
        partial.write_text(CORPUS, encoding="utf-8")
        os.replace(partial, path)
    return path


def export_of(kind, tmp_path_factory):
    """The version directory of `kind`, made once per session (all workers)."""
    root = shared_root(tmp_path_factory)
    path = root / kind
    with open(root / f"{kind}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (path / "BUILT").exists():
            shutil.rmtree(path, ignore_errors=True)
            path.mkdir()
            if KINDS[kind] is None:
                _keras_export(path, tmp_path_factory)
            else:
                corpus = ["--corpus", write_corpus(root)] if KINDS[kind][0] == "charlm" else []
                rnnserve(
                    "train",
                    *KINDS[kind],
                    *corpus,
                    *QUICK,
                    "--out",
                    path / "run",
                    "--export-base",
                    path / "export",
                )
            (path / "BUILT").touch()
    (version,) = [name for name in os.listdir(path / "export") if name.isdigit()]
    return path / "export" / version


# -- requests and the Python oracle --------------------------------------------------------


def warmup_requests(version_dir):
    """The PredictRequests of the export's own warmup file."""
    records = tf.data.TFRecordDataset(str(version_dir / WARMUP))
    logs = [prediction_log_pb2.PredictionLog.FromString(r.numpy()) for r in records]
    assert logs and all(log.WhichOneof("log_type") == "predict_log" for log in logs)
    return [log.predict_log.request for log in logs]


def signature_defs(version_dir):
    """The serve MetaGraphDef's SignatureDefs, read from saved_model.pb by protobuf alone."""
    saved_model = saved_model_pb2.SavedModel.FromString((version_dir / "saved_model.pb").read_bytes())
    (meta_graph,) = [m for m in saved_model.meta_graphs if "serve" in m.meta_info_def.tags]
    return meta_graph.signature_def


def request_variants(request, signature):
    """(label, {alias: ndarray}) requests derived from one warmup request."""
    inputs = {alias: tf.make_ndarray(proto) for alias, proto in request.inputs.items()}
    variants = [("warmup", inputs)]
    dims = {alias: signature.inputs[alias].tensor_shape.dim for alias in inputs}
    batched = [alias for alias, dim in dims.items() if dim and dim[0].size == -1]  # (None, ...) inputs
    if batched:

        def other(value):  # same dtype and value range, different values
            if value.dtype.kind == "f":
                return value * 0.5 + 0.25
            if value.dtype.kind in "SUO":
                return np.vectorize(lambda s: s[::-1])(value).astype(value.dtype)
            return np.flip(value, axis=-1) if value.ndim else value

        variants.append(
            (
                "batch of 2",
                {a: np.concatenate([v, other(v)]) if a in batched else v for a, v in inputs.items()},
            )
        )
    if {"temperature", "top_k", "seed"} <= set(inputs):
        sampling = {"temperature": np.float32(0.9), "top_k": np.int32(3), "seed": np.int64(17)}
        if "max_new_tokens" in inputs:
            sampling["max_new_tokens"] = np.int32(12)
        variants.append(("sampling", {**inputs, **sampling}))
    return variants


def as_rest_scalars(inputs):
    """Every scalar as a (1,) tensor, as a REST client's JSON `"seed": 5` arrives in TF Serving's C++."""
    return {alias: value.reshape(1) if value.ndim == 0 else value for alias, value in inputs.items()}


def write_requests(path, model_name, calls):
    """calls: [(signature, {alias: ndarray})] -> a TFRecord of PredictionLog, the warmup file's format."""
    with tf.io.TFRecordWriter(str(path)) as writer:
        for signature, inputs in calls:
            request = predict_pb2.PredictRequest(
                model_spec=model_pb2.ModelSpec(name=model_name, signature_name=signature)
            )
            for alias, value in inputs.items():
                request.inputs[alias].CopyFrom(tf.make_tensor_proto(value))
            log = prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request))
            writer.write(log.SerializeToString())


@functools.cache
def python_signatures(version_dir):
    return tf.saved_model.load(str(version_dir)).signatures


def python_outputs(version_dir, signature, inputs):
    function = python_signatures(version_dir)[signature]
    outputs = function(**{alias: tf.constant(value) for alias, value in inputs.items()})
    return {alias: tensor.numpy() for alias, tensor in outputs.items()}


def assert_same_outputs(cpp, python, where):
    assert sorted(cpp) == sorted(python), where
    for alias, expected in python.items():
        got = cpp[alias]
        assert got.dtype == expected.dtype and got.shape == expected.shape, (where, alias, got, expected)
        if expected.dtype.kind == "f":
            np.testing.assert_allclose(
                got, expected, rtol=FLOAT_TOLERANCE, atol=FLOAT_TOLERANCE, err_msg=f"{where} {alias}"
            )
        else:
            np.testing.assert_array_equal(got, expected, err_msg=f"{where} {alias}")


# -- the tests ------------------------------------------------------------------------------


def test_the_wire_field_numbers_are_tf_servings():
    """savedmodel_run.cc reads and writes these messages by field number."""
    numbers = {
        (message.DESCRIPTOR.full_name, field.name): field.number
        for message in (
            prediction_log_pb2.PredictionLog,
            prediction_log_pb2.PredictLog,
            predict_pb2.PredictRequest,
            predict_pb2.PredictResponse,
            model_pb2.ModelSpec,
        )
        for field in message.DESCRIPTOR.fields
    }
    expected = {
        ("tensorflow.serving.PredictionLog", "log_metadata"): 1,
        ("tensorflow.serving.PredictionLog", "classify_log"): 2,
        ("tensorflow.serving.PredictionLog", "regress_log"): 3,
        ("tensorflow.serving.PredictionLog", "multi_inference_log"): 4,
        ("tensorflow.serving.PredictionLog", "session_run_log"): 5,
        ("tensorflow.serving.PredictionLog", "predict_log"): 6,
        ("tensorflow.serving.PredictionLog", "predict_streamed_log"): 7,
        ("tensorflow.serving.PredictLog", "request"): 1,
        ("tensorflow.serving.PredictRequest", "model_spec"): 1,
        ("tensorflow.serving.PredictRequest", "inputs"): 2,
        ("tensorflow.serving.PredictRequest", "output_filter"): 3,
        ("tensorflow.serving.PredictResponse", "outputs"): 1,
        ("tensorflow.serving.PredictResponse", "model_spec"): 2,
        ("tensorflow.serving.ModelSpec", "name"): 1,
        ("tensorflow.serving.ModelSpec", "version"): 2,
        ("tensorflow.serving.ModelSpec", "signature_name"): 3,
    }
    assert {key: numbers.get(key) for key in expected} == expected


@pytest.mark.slow
@pytest.mark.parametrize("kind", list(KINDS))
def test_the_cpp_loader_loads_warms_up_and_answers_like_python(
    kind, savedmodel_run, tmp_path, tmp_path_factory
):
    version_dir = export_of(kind, tmp_path_factory)
    warmup = warmup_requests(version_dir)
    signatures = signature_defs(version_dir)

    calls, rest_calls, expected = [], [], []
    for request in warmup:
        name = request.model_spec.signature_name or "serving_default"
        for label, inputs in request_variants(request, signatures[name]):
            calls.append((name, inputs))
            rest_calls.append((name, as_rest_scalars(inputs)))
            expected.append((f"{kind} {name} ({label})", python_outputs(version_dir, name, inputs)))
    write_requests(tmp_path / "requests", kind, calls + rest_calls)
    printed, responses = run_program(
        savedmodel_run, version_dir, tmp_path / "requests", tmp_path / "responses"
    )

    # Loaded, and every warmup record replayed, in order.
    assert printed["warmup"] == [r.model_spec.signature_name or "serving_default" for r in warmup]
    # Every signature, as the MetaGraphDef has it.
    assert sorted(printed["signatures"]) == sorted(signatures)
    for name, signature in signatures.items():
        for side in ("inputs", "outputs"):
            infos = getattr(signature, side)
            assert printed["signatures"][name][side] == {
                alias: {
                    "name": info.name,
                    "dtype": types_pb2.DataType.Name(info.dtype),
                    "shape": None
                    if info.tensor_shape.unknown_rank
                    else [d.size for d in info.tensor_shape.dim],
                }
                for alias, info in infos.items()
            }, (name, side)
    # Every signature but the init op was run (warmup covers them all).
    assert {name for name, _ in calls} == set(signatures) - {INIT_OP}
    # The answers: as Python computes them, with (1,)-shaped scalars too.
    assert printed["requests"] == len(responses) == 2 * len(expected)
    for index, (where, python) in enumerate(expected + [(f"{w}, REST scalars", p) for w, p in expected]):
        response = responses[index]
        assert response.model_spec.signature_name == (calls + rest_calls)[index][0]
        cpp = {alias: tf.make_ndarray(proto) for alias, proto in response.outputs.items()}
        assert_same_outputs(cpp, python, where)
