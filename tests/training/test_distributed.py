"""`--strategy`: two multi-worker processes on 127.0.0.1 stay in lockstep, and
the mirrored strategy trains like the default one."""

import json

import keras
import numpy as np

import rnnserve.models  # noqa: F401  (registers the layers for load_model)
import rnnserve.training.metrics  # noqa: F401  (registers Perplexity, in the compile config)
from rnnserve.cli import main
from tests.training.helpers import SMALL_FLAGS, cli_env, free_ports, small_corpus, start_rnnserve


def test_two_workers_finish_one_epoch_with_identical_weights(tmp_path):
    corpus = small_corpus(tmp_path)
    ports = free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    workers = []
    for index in range(2):
        tf_config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
        workers.append(
            start_rnnserve(
                "train", "charlm", "--corpus", corpus, "--strategy", "multiworker", "--epochs", "1",
                "--out", str(tmp_path / f"worker{index}"), "--verbose", "2", *SMALL_FLAGS,
                env=cli_env(TF_CONFIG=tf_config),
            )
        )  # fmt: skip
    outputs = [worker.communicate(timeout=600)[0] for worker in workers]
    for worker, output in zip(workers, outputs):
        assert worker.returncode == 0, output[-3000:]
    models_ = [keras.models.load_model(tmp_path / f"worker{i}" / "model.keras") for i in range(2)]
    fresh = keras.models.load_model(tmp_path / "worker0" / "checkpoints" / "epoch-0001.keras")
    for a, b in zip(models_[0].weights, models_[1].weights, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    metrics = [json.loads((tmp_path / f"worker{i}" / "metrics.json").read_text()) for i in range(2)]
    assert metrics[0]["epochs"][0]["loss"] == metrics[1]["epochs"][0]["loss"]
    assert fresh.optimizer.iterations.numpy() > 0


def test_mirrored_strategy_trains(tmp_path):
    corpus = small_corpus(tmp_path)
    out = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "charlm",
                "--corpus",
                corpus,
                "--strategy",
                "mirrored",
                "--epochs",
                "1",
                "--out",
                str(out),
                "--verbose",
                "0",
                *SMALL_FLAGS,
            ]
        )
        == 0
    )
    final = json.loads((out / "metrics.json").read_text())["final"]
    assert final["val_loss"] < final["unigram_entropy"] + 0.5
