"""The generic writer: non-LM runs, the task-exporter hook, versions and atomicity.

- A regression run (no exporter registered) exports `serving_default` with
  the model's own named input and output, equal to the Keras model.
- A registered task exporter replaces that default.
- An export that fails at any stage (exception or interrupt) leaves the base
  exactly as it was; so does a warmup request that fails in the TF1 loader.
- Concurrent publications get distinct versions; the default version is 1 +
  the highest integer directory; a taken `--version` is refused up front.
"""

import json
import os
import signal
import subprocess
import sys
import threading
import time

import keras
import numpy as np
import pytest
import tensorflow as tf

import rnnserve.training.tasks  # noqa: F401  (the tasks register their exporters before a test swaps them)
from rnnserve.errors import UserError
from rnnserve.models import build_classifier, build_language_model, build_regressor
from rnnserve.training.export import (
    Endpoint,
    TaskExport,
    export_run,
    register_task_exporter,
    runs,
    versions,
    write_savedmodel,
    writer,
)
from rnnserve.training.vocab import Vocabulary
from tests.export.artifacts import load_savedmodel, write_run


def _snapshot(base):
    """Every path under `base` with its size (files) or None (directories)."""
    found = {}
    for root, dirs, files in os.walk(base):
        for name in dirs:
            found[os.path.relpath(os.path.join(root, name), base)] = None
        for name in files:
            path = os.path.join(root, name)
            found[os.path.relpath(path, base)] = os.path.getsize(path)
    return found


@pytest.fixture
def regression_run(tmp_path):
    model = build_regressor(3, output_dim=2, cell="gru", units=6)
    run_dir = tmp_path / "run"
    write_run(run_dir, model, None, task="regress", builder="regressor", model_config={"input_dim": 3})
    return run_dir, model


def test_a_regression_run_exports_its_named_input_and_output(regression_run, tmp_path):
    run_dir, model = regression_run
    path = export_run(run_dir, tmp_path / "base")
    assert path == str(tmp_path / "base" / "1")
    signature = load_savedmodel(path).signatures["serving_default"]
    assert list(signature.structured_input_signature[1]) == ["sequence"]
    x = np.random.default_rng(0).normal(size=(2, 5, 3)).astype(np.float32)
    outputs = signature(sequence=tf.constant(x))
    assert list(outputs) == ["prediction"]
    np.testing.assert_allclose(outputs["prediction"].numpy(), model(x), atol=1e-5, rtol=0)
    with open(os.path.join(path, "assets.extra", "rnnserve.json"), encoding="utf-8") as f:
        metadata = json.load(f)
    assert metadata["task"] == "regress"
    assert metadata["signatures"]["serving_default"]["inputs"] == {
        "sequence": {"dtype": "float32", "shape": [-1, -1, 3]}
    }


def test_a_registered_task_exporter_replaces_the_default(tmp_path, monkeypatch):
    monkeypatch.setattr(runs, "_TASK_EXPORTERS", {})
    model = build_classifier(3, vocab_size=12, units=6)
    write_run(tmp_path / "run", model, None, task="my_classifier", builder="classifier")

    def export_classifier(loaded, config, run_dir):
        def serve(tokens):  # (B, T)
            logits = loaded(tokens)  # (B, C)
            return {"logits": logits, "probabilities": tf.nn.softmax(logits)}

        specs = {"tokens": tf.TensorSpec((None, None), tf.int32)}
        return TaskExport([Endpoint("serving_default", serve, specs)], metadata={"labels": ["a", "b", "c"]})

    register_task_exporter("my_classifier", export_classifier)
    path = export_run(tmp_path / "run", tmp_path / "base")
    tokens = np.array([[3, 4, 5, 0]], np.int32)
    outputs = load_savedmodel(path).signatures["serving_default"](tokens=tf.constant(tokens))
    expected = model(tokens).numpy()
    np.testing.assert_allclose(outputs["logits"].numpy(), expected, atol=1e-5, rtol=0)
    np.testing.assert_allclose(outputs["probabilities"].numpy(), tf.nn.softmax(expected), atol=1e-6)
    with open(os.path.join(path, "assets.extra", "rnnserve.json"), encoding="utf-8") as f:
        assert json.load(f)["labels"] == ["a", "b", "c"]


def _crash(error):
    def crash(*args, **kwargs):
        raise error

    return crash


@pytest.mark.parametrize(
    "module, name, error",
    [
        (writer, "write_metadata", RuntimeError("disk full")),
        (writer, "verify_savedmodel", KeyboardInterrupt()),
        (versions, "fsync_tree", OSError("I/O error")),
    ],
    ids=["while-writing", "interrupted-while-verifying", "while-syncing"],
)
def test_an_export_killed_mid_write_leaves_the_base_unchanged(
    regression_run, tmp_path, monkeypatch, module, name, error
):
    run_dir, _ = regression_run
    base = tmp_path / "base"
    (base / "1").mkdir(parents=True)
    (base / "1" / "saved_model.pb").write_bytes(b"an older version")
    (base / "notes.txt").write_text("not a version")
    before = _snapshot(base)
    monkeypatch.setattr(module, name, _crash(error))
    with pytest.raises(type(error)):
        export_run(run_dir, base)
    assert _snapshot(base) == before


def test_an_export_whose_warmup_fails_in_the_tf1_loader_is_not_published(tmp_path):
    dense = keras.layers.Dense(2)
    dense.build((None, 3))

    def serve(x):  # (B, 3)
        check = tf.debugging.Assert(tf.reduce_all(x < 0.5), ["x must be below 0.5"])
        with tf.control_dependencies([check]):
            return {"y": dense(x)}

    endpoint = Endpoint(
        "serving_default",
        serve,
        {"x": tf.TensorSpec((None, 3), tf.float32)},
        [{"x": np.ones((1, 3), "float32")}],
    )
    with pytest.raises(RuntimeError, match="warmup request for signature 'serving_default' fails"):
        write_savedmodel(tmp_path / "base", [endpoint], {"task": "test"}, track=[dense])
    assert os.listdir(tmp_path / "base") == []


def test_concurrent_publications_get_distinct_versions(tmp_path, monkeypatch):
    base = tmp_path / "base"
    (base / "3").mkdir(parents=True)
    listed = versions.existing_versions
    start = threading.Barrier(6)

    def slow_listing(path):  # widens the window between choosing a number and renaming
        found = listed(path)
        threading.Event().wait(0.05)
        return found

    monkeypatch.setattr(versions, "existing_versions", slow_listing)
    published = []

    def export_one(index):
        with versions.staging_directory(str(base)) as staged:
            with open(os.path.join(staged, "saved_model.pb"), "w") as f:
                f.write(str(index))
            start.wait()
            published.append(versions.publish(staged, str(base)))

    threads = [threading.Thread(target=export_one, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(os.path.basename(p) for p in published) == ["4", "5", "6", "7", "8", "9"]
    assert sorted(os.listdir(base), key=int) == ["3", "4", "5", "6", "7", "8", "9"]


def test_the_default_version_is_one_more_than_the_highest_integer_directory(tmp_path):
    base = tmp_path / "base"
    for name in ("1", "7", "10", "abc", "3x", ".tmp-export-zz"):
        (base / name).mkdir(parents=True)
    (base / "12").write_text("a file, not a version")
    assert versions.existing_versions(str(base)) == [1, 7, 10]
    with versions.staging_directory(str(base)) as staged:
        assert versions.publish(staged, str(base)) == str(base / "11")


_STAGE_AND_WAIT = """
import sys, time
from rnnserve.training.export import versions
with versions.staging_directory(sys.argv[1]) as staged:
    print(staged, flush=True)
    time.sleep(120)
"""


def _staging_process(base):
    """A process inside `staging_directory(base)`; returns it and its directory."""
    process = subprocess.Popen(
        [sys.executable, "-c", _STAGE_AND_WAIT, str(base)],
        cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
        stdout=subprocess.PIPE,
        text=True,
    )
    return process, process.stdout.readline().strip()


def test_an_export_removes_directories_abandoned_by_killed_exports_only(tmp_path):
    """A SIGKILLed export cannot clean up; the next export into the base
    deletes its directory once it is old, but not one a live export holds
    nor a fresh one."""
    base = tmp_path / "base"
    base.mkdir()
    killed, abandoned = _staging_process(base)
    live, in_use = _staging_process(base)
    try:
        killed.send_signal(signal.SIGKILL)
        killed.wait(timeout=30)
        fresh = base / ".tmp-export-fresh"
        fresh.mkdir()
        an_hour_ago = time.time() - 3600
        for path in (abandoned, in_use):
            os.utime(path, (an_hour_ago, an_hour_ago))
        assert os.path.isdir(abandoned)
        with versions.staging_directory(str(base)) as staged:
            published = versions.publish(staged, str(base))
        left = sorted(os.listdir(base))
        assert left == sorted(["1", os.path.basename(in_use), ".tmp-export-fresh"])
        assert published == str(base / "1")
    finally:
        live.kill()
        for process in (killed, live):
            process.wait(timeout=30)
            process.stdout.close()


def test_a_taken_version_is_refused_before_any_work(regression_run, tmp_path):
    run_dir, _ = regression_run
    base = tmp_path / "base"
    (base / "2").mkdir(parents=True)
    with pytest.raises(UserError, match="version 2 already exists"):
        export_run(run_dir, base, version=2)
    assert os.listdir(base) == ["2"]
    path = export_run(run_dir, base, version=5)
    assert path == str(base / "5")


def test_verify_false_publishes_without_loading_the_export(tmp_path, monkeypatch):
    """`verify=False` skips the TF1-loader replay (it is the caller's choice to make)."""
    import rnnserve.training.export.writer as writer
    from rnnserve.training.export import export_language_model

    calls = []
    monkeypatch.setattr(writer, "verify_savedmodel", lambda *a, **k: calls.append(a))
    vocabulary = Vocabulary.build("abc abc")
    model = build_language_model(len(vocabulary), cell="rnn", units=4, embedding_dim=3)
    export_language_model(model, vocabulary, str(tmp_path / "a"), verify=False)
    assert calls == []
    export_language_model(model, vocabulary, str(tmp_path / "b"), verify=True)
    assert len(calls) == 1
