"""Ctrl-C (SIGINT) during `rnnserve train`, at any moment, ends the process
cleanly with exit status 130: once training has started, the epoch in
progress is checkpointed and the exact `--resume` command is printed, and
that command finishes the run. Every case is a real process sent a real
signal, as a terminal would."""

import json
import shlex
import signal
import subprocess
import sys
import threading
import time

import keras
import pytest

import rnnserve.models  # noqa: F401  (registers the layers for load_model)
import rnnserve.training.metrics  # noqa: F401  (registers Perplexity, in the compile config)
from tests.training.helpers import SMALL_FLAGS, cli_env, small_corpus

# A terminal's process: SIGINT raises KeyboardInterrupt (a test runner started
# in the background would otherwise hand its children SIGINT ignored).
LAUNCH = (
    "import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
    "from rnnserve.cli import main; sys.exit(main(sys.argv[1:]))"
)
EPOCHS = 2


class Training:
    """`rnnserve train charlm` in a child process, its output read as it comes."""

    def __init__(self, *args):
        self.process = subprocess.Popen(
            [sys.executable, "-c", LAUNCH, "train", "charlm", *args],
            env=cli_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.stdout, self.stderr = [], []
        self._readers = [
            threading.Thread(target=self._read, args=(stream, lines), daemon=True)
            for stream, lines in ((self.process.stdout, self.stdout), (self.process.stderr, self.stderr))
        ]
        for reader in self._readers:
            reader.start()

    @staticmethod
    def _read(stream, lines):
        for line in stream:
            lines.append(line.rstrip("\n"))

    def wait_for(self, condition, timeout=300):
        deadline = time.monotonic() + timeout
        while not condition():
            assert self.process.poll() is None, self.output()
            assert time.monotonic() < deadline, self.output()
            time.sleep(0.05)

    def printed(self, text):
        return lambda: any(text in line for line in self.stdout)

    def interrupt(self):
        self.process.send_signal(signal.SIGINT)

    def finish(self, timeout=300):
        status = self.process.wait(timeout=timeout)
        for reader in self._readers:
            reader.join(timeout=10)
        return status

    def output(self):
        return "\n".join(self.stdout[-30:] + ["--- stderr ---"] + self.stderr[-30:])


def _at_training_start(training, run):
    training.wait_for(training.printed("Training epochs 1 to"))


def _inside_epoch_one(training, run):
    _at_training_start(training, run)
    time.sleep(2.5)


def _after_epoch_one(training, run):
    training.wait_for((run / "checkpoints" / "epoch-0001.keras").exists)


MOMENTS = {
    "as training starts": (_at_training_start, 1),
    "inside epoch 1": (_inside_epoch_one, 1),
    "as epoch 2 starts": (_after_epoch_one, 1),
    "twice, inside epoch 1": (_inside_epoch_one, 2),
}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return small_corpus(tmp_path_factory.mktemp("corpus"), size=20_000)  # short epochs: quick resumes


@pytest.mark.parametrize("moment", sorted(MOMENTS))
def test_ctrl_c_saves_the_epoch_prints_the_resume_command_and_resume_finishes(moment, corpus, tmp_path):
    wait, presses = MOMENTS[moment]
    run = tmp_path / "run"
    training = Training(
        "--corpus", corpus, "--epochs", str(EPOCHS), "--out", str(run), "--verbose", "2", *SMALL_FLAGS
    )
    wait(training, run)
    training.interrupt()
    if presses == 2:
        time.sleep(0.3)
        training.interrupt()
    assert training.finish() == 130, training.output()
    errors = "\n".join(training.stderr)
    assert "Traceback" not in errors, training.output()
    command = f"rnnserve train charlm --resume {shlex.quote(str(run))}"
    if presses == 1:
        assert training.stderr[-2:] == ["Continue with:", f"  {command}"], training.output()
        [saved] = [line for line in training.stderr if line.startswith("Interrupted. Epoch ")]
        checkpoint = saved.rsplit("saved in ", 1)[1].rstrip(".")
        keras.models.load_model(checkpoint)  # a whole, loadable training state
        done = json.loads((run / "metrics.json").read_text())["epochs"]
        assert f"epoch-{done[-1]['epoch']:04d}.keras" in checkpoint
        assert not (run / "model.keras").exists()
    else:
        assert "Ctrl-C again: quitting now" in errors

    if moment == "inside epoch 1":  # a run recorded by an earlier version (config.json format 1) resumes too
        content = json.loads((run / "config.json").read_text())
        content["format"], content["args"] = 1, content.pop("train_config")
        (run / "config.json").write_text(json.dumps(content))
    resumed = subprocess.run(
        [sys.executable, "-c", LAUNCH, *shlex.split(command)[1:], "--verbose", "2"],
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    metrics = json.loads((run / "metrics.json").read_text())
    assert [row["epoch"] for row in metrics["epochs"]] == list(range(1, EPOCHS + 1))
    assert metrics["final"]["status"] == "finished"
    assert (run / "model.keras").exists()


def test_ctrl_c_while_tensorflow_loads_is_one_line_and_writes_nothing(corpus, tmp_path):
    run = tmp_path / "run"
    training = Training("--corpus", corpus, "--out", str(run), "--verbose", "2", *SMALL_FLAGS)
    training.wait_for(training.printed("Loading TensorFlow"))
    training.interrupt()
    assert training.finish() == 130, training.output()
    assert [line for line in training.stderr if line.strip()][-1] == "rnnserve train: interrupted"
    assert "Traceback" not in "\n".join(training.stderr)
    assert not (run / "config.json").exists()
