"""A run killed with SIGKILL mid-epoch resumes from its last checkpoint,
loses at most the epoch in progress, and its metrics continue."""

import json
import signal
import time

import keras

import rnnserve.models  # noqa: F401  (registers the layers for load_model)
import rnnserve.training.metrics  # noqa: F401  (registers Perplexity, in the compile config)
from rnnserve.training.partitioning import steps_per_epoch
from tests.training.helpers import SMALL_FLAGS, small_corpus, start_rnnserve


def _wait_for(path, process, timeout=300):
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert process.poll() is None, process.stdout.read()[-3000:]
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.1)


def test_sigkill_mid_epoch_then_resume_continues_the_run(tmp_path):
    corpus = small_corpus(tmp_path)
    run = tmp_path / "run"
    flags = ["--corpus", corpus, "--epochs", "5", "--out", str(run), "--verbose", "2", *SMALL_FLAGS]
    first = start_rnnserve("train", "charlm", *flags)
    _wait_for(run / "checkpoints" / "epoch-0002.keras", first)
    time.sleep(0.2)  # epoch 3 starts as soon as the checkpoint of epoch 2 is renamed into place
    first.send_signal(signal.SIGKILL)
    first.wait()

    # Whole files only: metrics parse, every checkpoint loads, no final-named partials.
    done = json.loads((run / "metrics.json").read_text())["epochs"]
    checkpoints = sorted(p.name for p in (run / "checkpoints").glob("epoch-*.keras"))
    assert checkpoints[-1] in ("epoch-0002.keras", "epoch-0003.keras")
    killed_after = int(checkpoints[-1][6:10])
    assert done[-1]["epoch"] in (
        killed_after,
        killed_after + 1,
    )  # metrics are written just before the checkpoint
    for name in checkpoints:
        keras.models.load_model(run / "checkpoints" / name)
    assert not (run / "model.keras").exists()

    second = start_rnnserve("train", "charlm", "--resume", str(run), "--verbose", "2")
    output = second.communicate(timeout=600)[0]
    assert second.returncode == 0, output[-3000:]
    assert f"Resuming {run} after epoch {killed_after}" in output
    metrics = json.loads((run / "metrics.json").read_text())
    assert [row["epoch"] for row in metrics["epochs"]] == [1, 2, 3, 4, 5]
    assert metrics["resumed_after_epoch"] == [killed_after]
    assert metrics["final"]["status"] == "finished"
    walls = [row["wall_time"] for row in metrics["epochs"]]
    assert walls == sorted(walls)
    # The optimizer state came back with the weights: its step count spans all five epochs.
    text = open(corpus, encoding="utf-8").read()
    steps = steps_per_epoch("random", round(len(text) * 0.9), 32, 16)
    resumed = keras.models.load_model(run / "checkpoints" / "epoch-0005.keras")
    assert resumed.optimizer.iterations.numpy() == 5 * steps
    assert (run / "model.keras").exists()
