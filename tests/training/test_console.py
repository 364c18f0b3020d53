"""What `rnnserve train` puts on the screen: something during the seconds
before epoch 1, progress bars only on a terminal (plain lines in a log), and
none of TensorFlow's start-up noise on a machine without a GPU, while real
warnings and errors still get through. Real processes, a real pseudo-terminal."""

import os
import pty
import subprocess
import sys

import pytest

from rnnserve.quiet_tensorflow import NOISE
from tests.conftest import REPO_ROOT

# Start-up lines of TensorFlow without a GPU; none says anything is wrong.
NOISE_TEXTS = (
    "absl::InitializeLog",
    "cuda drivers",
    "cuInit",
    "cpu_feature_guard",
    "To enable the following",
)


def user_env():
    """A user's environment: TF_CPP_MIN_LOG_LEVEL not set."""
    env = {key: value for key, value in os.environ.items() if key != "TF_CPP_MIN_LOG_LEVEL"}
    return {**env, "PYTHONPATH": REPO_ROOT}


def train_hello(tmp_path, name):
    return [
        sys.executable,
        "-m",
        "rnnserve",
        "train",
        "hello",
        "--epochs",
        "1",
        "--out",
        str(tmp_path / name),
    ]


def test_a_log_gets_plain_lines_and_no_startup_noise_and_progress_before_epoch_1(tmp_path):
    result = subprocess.run(
        train_hello(tmp_path, "run"), env=user_env(), capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    for text in NOISE_TEXTS:
        assert text not in result.stderr and text not in result.stdout, text
    lines = result.stdout.splitlines()
    [epoch_line] = [i for i, line in enumerate(lines) if line.startswith("20/20 - ")]  # Keras' line per epoch
    before = "\n".join(lines[:epoch_line])
    for stage in (
        "Loading TensorFlow",
        "Preparing the data",
        "Building the model",
        "Run directory:",
        "Training epoch 1",
    ):
        assert stage in before
    assert "\r" not in result.stdout and "━" not in result.stdout


def test_a_terminal_gets_progress_bars(tmp_path):
    controller, terminal = pty.openpty()
    process = subprocess.Popen(
        train_hello(tmp_path, "run"), env=user_env(), stdin=terminal, stdout=terminal, stderr=terminal
    )
    os.close(terminal)
    chunks = []
    while True:
        try:
            chunk = os.read(controller, 65536)
        except OSError:  # the terminal closed: the process ended
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(controller)
    assert process.wait(timeout=600) == 0
    screen = b"".join(chunks).decode("utf-8", "replace")
    assert "━" in screen and "\r" in screen  # Keras' progress bar, redrawn in place
    for text in NOISE_TEXTS:
        assert text not in screen, text


def test_what_tensorflow_prints_at_start_up_without_a_gpu_is_all_filtered():
    """The oracle is TensorFlow itself: its start-up stderr, unfiltered, on
    this machine (CI has no GPU)."""
    probe = "import tensorflow as tf; tf.config.list_physical_devices('GPU')"
    env = {**user_env(), "TF_CPP_MIN_LOG_LEVEL": "0"}
    result = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=300
    )
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines, "TensorFlow printed nothing at start-up; the filter has nothing to do"
    assert [line for line in lines if not NOISE.match(line)] == []


@pytest.mark.parametrize(
    "line",
    [
        "W0000 00:00:1796161622.588493   16491 op_kernel.cc:1830] OP_REQUIRES failed at save_restore_v2_ops.cc",
        "E0000 00:00:1796161622.588493   16491 cuda_driver.cc:152] CUDA_ERROR_OUT_OF_MEMORY: out of memory",
        "Traceback (most recent call last):",
        "UserWarning: something the user should see",
    ],
)
def test_real_warnings_and_errors_are_not_filtered(line):
    assert not NOISE.match(line)
