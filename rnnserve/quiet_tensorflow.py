"""TensorFlow's start-up, without its start-up noise.

On a machine without a GPU, importing TensorFlow and touching its devices
prints lines that say nothing is wrong: "All log messages before
absl::InitializeLog() ...", "Could not find cuda drivers on your machine",
the CPU-instructions banner, and an *error* line "failed call to cuInit"
(there is no GPU, so the CPU is used). TensorFlow's C++ runtime writes them
to file descriptor 2 before any Python-side setting can silence them.

`import_tensorflow_quietly` imports TensorFlow and initializes its devices
with stderr captured, drops exactly those lines and passes everything else
through, so a real warning or error is still seen. The `rnnserve` command
calls it before a command that needs TensorFlow, after setting
`TF_CPP_MIN_LOG_LEVEL` to 1 (TensorFlow's info lines off, warnings and
errors kept) unless the user set it.

Example:

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", DEFAULT_LOG_LEVEL)
    import_tensorflow_quietly()
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile

# TF_CPP_MIN_LOG_LEVEL: 0 all, 1 no INFO, 2 no WARNING, 3 no ERROR.
DEFAULT_LOG_LEVEL = "1"

# The lines dropped; each says nothing is wrong on a machine without a GPU.
NOISE = re.compile(
    r"WARNING: All log messages before absl::InitializeLog\(\) is called"
    r"|I\d{4} .*\] "  # an INFO line of the C++ runtime (absl's format), before the level applies
    r"|To enable the following instructions: .* rebuild TensorFlow"  # the CPU-instructions banner
    r"|E\d{4} .*\] failed call to cuInit: "  # no CUDA device: TensorFlow runs on the CPU
)


def _import_and_find_devices():
    import tensorflow as tf

    tf.config.list_physical_devices("GPU")  # initializes CUDA (or finds it missing) now, captured


@contextlib.contextmanager
def startup_noise_filtered():
    """Captures fd 2 for the block and passes on everything but the start-up noise.

    For code that may import TensorFlow as a side effect (a command's argument
    parser, say): what it writes to stderr reaches the user when the block
    ends, without the lines of `NOISE`.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            for line in capture.read().decode("utf-8", "replace").splitlines():
                if line.strip() and not NOISE.match(line):
                    print(line, file=sys.stderr)


def import_tensorflow_quietly():
    """Imports TensorFlow, and initializes its devices, with the start-up
    noise dropped from stderr (see the module docstring)."""
    if "tensorflow" in sys.modules:
        return
    with startup_noise_filtered():
        _import_and_find_devices()
