"""Shared helpers of the training tests: a small real corpus and the CLI."""

import os
import socket
import subprocess
import sys

from rnnserve.training.corpus import builtin_corpus
from tests.conftest import REPO_ROOT

SMALL_FLAGS = ["--units", "32", "--seq-len", "32", "--batch-size", "16", "--sample-length", "20"]


def small_corpus(directory, size=60_000):
    """The first `size` characters of the built-in corpus (whole lines), as a file."""
    text = builtin_corpus()[:size]
    path = os.path.join(directory, "small.txt")
    with open(path, "w", encoding="utf-8") as f:
        f.write(text[: text.rfind("\n") + 1])
    return path


def cli_env(**extra):
    return {**os.environ, "PYTHONPATH": REPO_ROOT, "TF_CPP_MIN_LOG_LEVEL": "2", **extra}


def start_rnnserve(*args, env=None, **kwargs):
    """`python -m rnnserve ARGS` in the background (a real, killable process)."""
    return subprocess.Popen(
        [sys.executable, "-m", "rnnserve", *args],
        env=env or cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        **kwargs,
    )


def free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports
