"""`charlm` learns real text, and a run directory holds everything
docs/run-directory.md promises."""

import contextlib
import io
import json

import keras
import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import rnnserve.models  # noqa: F401  (registers the layers for load_model)
from rnnserve.cli import main
from rnnserve.training.tasks.charlm import unigram_entropy
from rnnserve.training.vocab import Vocabulary
from tests.conftest import TINYSHAKESPEARE
from tests.training.helpers import SMALL_FLAGS, small_corpus


@pytest.mark.tinyshakespeare
def test_sixty_seconds_on_tinyshakespeare_beat_the_unigram_entropy(tmp_path):
    """The unigram entropy (computed here from the corpus) is the loss of the
    best context-free model; a minute of LSTM training must be far below it."""
    text = open(TINYSHAKESPEARE, encoding="utf-8").read()
    vocab = Vocabulary.build(text)
    entropy = unigram_entropy(vocab.encode(text[: int(len(text) * 0.9)]), len(vocab))
    assert 3.0 < entropy < 3.5
    out = tmp_path / "run"
    argv = [
        "train",
        "charlm",
        "--corpus",
        TINYSHAKESPEARE,
        "--time-budget",
        "60",
        "--epochs",
        "50",
        "--out",
        str(out),
        "--verbose",
        "0",
    ]
    assert main(argv) == 0
    final = json.loads((out / "metrics.json").read_text())["final"]
    assert final["unigram_entropy"] == pytest.approx(entropy)
    assert final["val_loss"] < entropy - 0.8, final
    assert final["val_perplexity"] == pytest.approx(np.exp(final["val_loss"]))
    assert final["status"] == "stopped by --time-budget"


@pytest.fixture(scope="module")
def sequential_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("run")
    out = root / "run"
    argv = [
        "train", "charlm", "--corpus", small_corpus(root), "--batching", "sequential", "--epochs", "2",
        "--out", str(out), "--verbose", "2", "--export-base", str(root / "export"), *SMALL_FLAGS,
    ]  # fmt: skip
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(argv) == 0
    (root / "stdout.txt").write_text(printed.getvalue())
    return out


def test_run_directory_holds_config_vocab_metrics_model_checkpoints_logs_and_curves(sequential_run):
    out = sequential_run
    config = json.loads((out / "config.json").read_text())
    assert config["task"] == "charlm" and config["train_config"]["batching"] == "sequential"
    assert config["model"] == {
        "builder": "language_model", "vocab_size": len(Vocabulary.load(out / "vocab.json")), "cell": "lstm",
        "units": 32, "num_layers": 1, "embedding_dim": 64, "dropout": 0.0,
    }  # fmt: skip
    metrics = json.loads((out / "metrics.json").read_text())
    assert [row["epoch"] for row in metrics["epochs"]] == [1, 2]
    for row in metrics["epochs"]:
        assert {"loss", "val_loss", "val_perplexity", "tokens_per_second", "wall_time"} <= set(row)
        assert row["val_perplexity"] == pytest.approx(np.exp(row["val_loss"]), rel=1e-4)
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["epoch-0001.keras", "epoch-0002.keras"]
    events = EventAccumulator(str(out / "tensorboard" / "train")).Reload()
    assert "epoch_loss" in events.Tags()["tensors"]


def test_saved_model_is_the_stateless_twin_of_the_stateful_training_model(sequential_run, rng):
    """model.keras takes any batch size; its weights are the last checkpoint's."""
    saved = keras.models.load_model(sequential_run / "model.keras", compile=False)
    assert not any(getattr(layer, "stateful", False) for layer in saved.layers)
    checkpoint = keras.models.load_model(sequential_run / "checkpoints" / "epoch-0002.keras", compile=False)
    for a, b in zip(saved.trainable_weights, checkpoint.trainable_weights, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert saved(rng.integers(0, 10, size=(3, 7))).shape[:2] == (3, 7)


def test_refuses_to_overwrite_an_existing_run(sequential_run, capsys, tmp_path):
    assert (
        main(
            [
                "train",
                "charlm",
                "--out",
                str(sequential_run),
                "--corpus",
                small_corpus(tmp_path),
                "--verbose",
                "0",
            ]
        )
        == 2
    )
    assert "already holds a run; pass --resume" in capsys.readouterr().err


def test_export_base_publishes_the_trained_model(sequential_run, rng):
    """`train --export-base` exports version 1, whose logits are model.keras's."""
    import tensorflow as tf

    loaded = tf.saved_model.load(str(sequential_run.parent / "export" / "1"))
    tokens = rng.integers(1, 20, size=(2, 9)).astype(np.int32)
    logits = loaded.signatures["serving_default"](tokens=tf.constant(tokens))["logits"]
    expected = keras.models.load_model(sequential_run / "model.keras", compile=False)(tokens)
    np.testing.assert_allclose(logits, expected, atol=1e-5)


def test_every_epoch_prints_a_sample_continuing_the_prompt(sequential_run):
    printed = (sequential_run.parent / "stdout.txt").read_text()
    vocab = Vocabulary.load(sequential_run / "vocab.json")
    for epoch in (1, 2):
        sample = printed.split(f"--- sample after epoch {epoch} ---\n")[1].split("\n---")[0]
        assert sample.startswith("The ")
        assert len(vocab.encode(sample)) == len("The ") + 20  # --sample-length 20
        assert "[UNK]" not in sample
