"""Fixtures for the serving tests: SavedModels built with plain TF, and running servers.

Everything is started once per session (per xdist worker) on ephemeral
loopback ports. Tests that change what is on disk (hot reload, corrupt
versions) make their own base directories and servers.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import threading
import time

import grpc
import numpy as np
import pytest
import tensorflow as tf
from serving_savedmodels import write_char_lm, write_classify_regress
from tensorflow_serving.apis import model_service_pb2_grpc, prediction_service_pb2_grpc
from tensorflow_serving.config import model_server_config_pb2

from rnnserve.serving.config import PLATFORM, ServerOptions
from rnnserve.serving.server import ModelServer

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def rnnserve(*args, timeout=180):
    """`python -m rnnserve ARGS` as a user runs it; returns the CompletedProcess (stdout, stderr as text)."""
    env = dict(os.environ, PYTHONPATH=REPO_ROOT, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run(
        [sys.executable, "-m", "rnnserve", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=REPO_ROOT,
    )


LM = "charlm"
CLS = "toyclassifier"


@pytest.fixture(scope="session")
def exports(tmp_path_factory):
    """Base paths of the two fixture models: {"charlm": .../charlm, "toyclassifier": ...}."""
    root = tmp_path_factory.mktemp("exports")
    lm_base, cls_base = str(root / LM), str(root / CLS)
    write_char_lm(lm_base, 1)
    write_classify_regress(cls_base, 1)
    return {LM: lm_base, CLS: cls_base}


@pytest.fixture(scope="session")
def lm_path(exports):
    return os.path.join(exports[LM], "1")


@pytest.fixture(scope="session")
def direct(lm_path):
    """The LM's signatures called directly through TF2's loader (the oracle)."""
    loaded = tf.saved_model.load(lm_path)

    def call(signature: str, **inputs):
        outputs = loaded.signatures[signature](**{k: tf.constant(v) for k, v in inputs.items()})
        return {k: v.numpy() for k, v in outputs.items()}

    call.loaded = loaded
    return call


def model_config(models: dict) -> model_server_config_pb2.ModelServerConfig:
    """A ModelServerConfig serving name -> base path."""
    config = model_server_config_pb2.ModelServerConfig()
    for name, base in models.items():
        entry = config.model_config_list.config.add()
        entry.name, entry.base_path, entry.model_platform = name, base, PLATFORM
    return config


def start_server(models: dict, **options) -> ModelServer:
    """An in-process ModelServer on ephemeral ports (REST too)."""
    options.setdefault("port", 0)
    options.setdefault("rest_api_port", 0)
    options.setdefault("file_system_poll_wait_seconds", 0.2)
    options.setdefault("max_num_load_retries", 0)  # a broken test version fails at once
    return ModelServer(ServerOptions(model_config=model_config(models), **options)).start()


@pytest.fixture(scope="session")
def server(exports):
    """One shared server with both fixture models, for tests that only read."""
    from rnnserve.serving.config_protos import MonitoringConfig

    monitoring = MonitoringConfig()
    monitoring.prometheus_config.enable = True
    running = start_server(exports, monitoring=monitoring)
    yield running
    running.stop(grace=2)


HALF = "half_plus_two"
TF2 = "tf2_signatures"


@pytest.fixture(scope="session")
def tf_models(tmp_path_factory):
    """Base paths of TF Serving's kind of test models: {"half_plus_two": ..., "tf2_signatures": ...}."""
    from tf_serving_models import write_half_plus_two, write_tf2_signatures

    root = tmp_path_factory.mktemp("tf_serving_models")
    write_half_plus_two(str(root / HALF))
    write_tf2_signatures(str(root / TF2))
    return {HALF: str(root / HALF), TF2: str(root / TF2)}


@pytest.fixture(scope="session")
def tf_server(tf_models):
    """A server of the TF Serving test models with TF Serving's defaults, CORS on."""
    running = start_server(tf_models, cors=True)
    yield running
    running.stop(grace=2)


@pytest.fixture(scope="session")
def channel(server):
    with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as opened:
        yield opened


@pytest.fixture(scope="session")
def prediction_stub(channel):
    return prediction_service_pb2_grpc.PredictionServiceStub(channel)


@pytest.fixture(scope="session")
def model_stub(channel):
    return model_service_pb2_grpc.ModelServiceStub(channel)


@pytest.fixture(scope="session")
def rest_url(server):
    return f"http://127.0.0.1:{server.rest_port}"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class ServerProcess:
    """`python -m rnnserve serve ...` in a subprocess; reads its ports from stdout.

    Threads keep reading the server's stderr (`log`) from the start and its
    stdout (`lines`) once the ports are known: an undrained pipe fills up
    (64 KiB) and then blocks the server's next write, which would hang it
    mid-request.
    """

    def __init__(self, *flags: str):
        env = dict(os.environ, PYTHONPATH=REPO_ROOT, TF_CPP_MIN_LOG_LEVEL="2")
        self.rest_port = free_port()
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "rnnserve",
                "serve",
                "--port",
                "0",
                "--rest_api_port",
                str(self.rest_port),
                "--file_system_poll_wait_seconds",
                "0.2",
                *flags,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=REPO_ROOT,
        )
        self.lines, self.log = [], []
        self._changed = threading.Condition()
        self._readers = [
            threading.Thread(target=self._drain, args=(self.process.stderr, self.log), daemon=True)
        ]
        self._readers[0].start()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()
            if not line:
                code = self.process.wait()
                self._readers[0].join(timeout=60)
                raise RuntimeError(f"server exited early: {code} {''.join(self.log)[-3000:]}")
            self.lines.append(line)
            match = re.search(r"Serving gRPC on [\d.]+:(\d+)", line)
            if match:
                self.grpc_port = int(match.group(1))
            if line.startswith("Serving REST"):
                self._readers.append(
                    threading.Thread(target=self._drain, args=(self.process.stdout, self.lines), daemon=True)
                )
                self._readers[-1].start()
                return
        raise RuntimeError("server did not announce its ports within 120 s")

    def _drain(self, pipe, kept) -> None:
        for line in pipe:
            with self._changed:
                kept.append(line)
                self._changed.notify_all()

    def wait_for_log(self, text: str, timeout: float = 60) -> None:
        """Waits until a line of the server's stderr contains `text`."""
        with self._changed:
            found = self._changed.wait_for(lambda: any(text in line for line in self.log), timeout)
        assert found, f"no {text!r} in the server's log within {timeout} s: {''.join(self.log)[-3000:]}"

    def output(self) -> tuple[str, str]:
        """`(stdout, stderr)` of an exited server, read to the end."""
        for reader in self._readers:
            reader.join(timeout=60)
        return "".join(self.lines), "".join(self.log)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=60)


@pytest.fixture(scope="session")
def server_process(exports):
    """The CLI server (`rnnserve serve`) in its own process, serving the LM."""
    running = ServerProcess("--model_name", LM, "--model_base_path", exports[LM])
    yield running
    running.stop()


def lm_generate_inputs(tokens, state=None, max_new_tokens=5, temperature=0.0, top_k=0, seed=0) -> dict:
    """The six inputs of the `generate` signature, with the contract's dtypes."""
    tokens = np.asarray(tokens, np.int32)
    if state is None:
        from serving_savedmodels import STATE_SIZE

        state = np.zeros((tokens.shape[0], STATE_SIZE), np.float32)
    return {
        "tokens": tokens,
        "state": np.asarray(state, np.float32),
        "max_new_tokens": np.int32(max_new_tokens),
        "temperature": np.float32(temperature),
        "top_k": np.int32(top_k),
        "seed": np.int64(seed),
    }
