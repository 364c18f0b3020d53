"""Server-side sequences: `--max_sequence_number`, `--sequence_idle_timeout_seconds`, version pinning.

OpenVINO Model Server's codes (UNAVAILABLE past the limit, NOT_FOUND after
expiry), the live-sequence gauge read from the Prometheus page, and a
sequence that keeps running on its version through a hot reload, checked
against each version's own `step` through TensorFlow's loader.
"""

from __future__ import annotations

import argparse
import os
import time
import urllib.request

import grpc
import numpy as np
import pytest
from conftest import LM, start_server
from sequence_requests import (
    END,
    FORK,
    START,
    TIMEOUT,
    Oracle,
    outputs_of,
    request,
    rpc_code,
    sequence_id_of,
    step,
    tokens_of,
)
from serving_savedmodels import write_char_lm
from tensorflow_serving.apis import get_model_status_pb2, model_service_pb2_grpc, prediction_service_pb2_grpc

from rnnserve.serving.config import add_server_flags, options_from_flags
from rnnserve.serving.config_protos import MonitoringConfig
from rnnserve.serving.errors import ConfigError


def test_the_sequence_flags_reach_the_server_options(exports):
    parser = argparse.ArgumentParser(allow_abbrev=False)
    add_server_flags(parser)
    flags = [
        "--model_base_path",
        exports[LM],
        "--max_sequence_number=7",
        "--sequence_idle_timeout_seconds=2.5",
    ]
    options = options_from_flags(parser.parse_args(flags))
    assert (options.max_sequence_number, options.sequence_idle_timeout_seconds) == (7, 2.5)
    defaults = options_from_flags(parser.parse_args(flags[:2]))
    assert (defaults.max_sequence_number, defaults.sequence_idle_timeout_seconds) == (500, 300.0)
    with pytest.raises(ConfigError, match="--max_sequence_number must be at least 1, got 0"):
        options_from_flags(parser.parse_args([*flags[:2], "--max_sequence_number=0"]))


# -- limits: a server with 2 sequences per model and a 1.5 s idle timeout --
@pytest.fixture(scope="module")
def small_server(exports):
    monitoring = MonitoringConfig()
    monitoring.prometheus_config.enable = True
    running = start_server(
        {LM: exports[LM]}, monitoring=monitoring, max_sequence_number=2, sequence_idle_timeout_seconds=1.5
    )
    yield running
    running.stop(grace=2)


@pytest.fixture(scope="module")
def small_stub(small_server):
    with grpc.insecure_channel(f"127.0.0.1:{small_server.grpc_port}") as channel:
        yield prediction_service_pb2_grpc.PredictionServiceStub(channel)


def live_sequences(server) -> float:
    url = f"http://127.0.0.1:{server.rest_port}/monitoring/prometheus/metrics"
    with urllib.request.urlopen(url, timeout=TIMEOUT) as answer:
        page = answer.read().decode()
    prefix = f':rnnserve:serving:live_sequences{{model_name="{LM}"}} '
    lines = [line for line in page.splitlines() if line.startswith(prefix)]
    return float(lines[0][len(prefix) :]) if lines else 0.0


def test_past_max_sequence_number_a_start_is_unavailable_until_one_ends(small_stub, small_server):
    first = sequence_id_of(step(small_stub, tokens_of(2), control=START))
    second = sequence_id_of(step(small_stub, tokens_of(2), control=START))
    assert live_sequences(small_server) == 2
    assert rpc_code(lambda: step(small_stub, tokens_of(2), control=START)) == grpc.StatusCode.UNAVAILABLE
    assert rpc_code(lambda: step(small_stub, tokens_of(2), first, FORK)) == grpc.StatusCode.UNAVAILABLE
    step(small_stub, tokens_of(1), first, END)
    third = sequence_id_of(step(small_stub, tokens_of(2), control=START))
    assert live_sequences(small_server) == 2
    step(small_stub, tokens_of(1), third, END)
    step(small_stub, tokens_of(1), second, END)


def test_a_failed_start_or_fork_leaves_no_sequence_behind(small_stub, small_server):
    before = live_sequences(small_server)
    bad_token = np.array([[999]], np.int32)  # the model's gather rejects it
    assert rpc_code(lambda: step(small_stub, bad_token, 5555, START)) == grpc.StatusCode.INVALID_ARGUMENT
    parent = sequence_id_of(step(small_stub, tokens_of(2), 5555, START))  # the id is free
    assert rpc_code(lambda: step(small_stub, bad_token, parent, FORK)) == grpc.StatusCode.INVALID_ARGUMENT
    assert live_sequences(small_server) == before + 1
    step(small_stub, tokens_of(1), parent, END)


def test_an_idle_sequence_expires_then_is_not_found(small_stub, small_server):
    time.sleep(1.6)  # earlier tests' sequences expire
    sequence_id = sequence_id_of(step(small_stub, tokens_of(2), control=START))
    time.sleep(0.8)
    step(small_stub, tokens_of(1), sequence_id)  # a call keeps it alive
    time.sleep(0.8)
    step(small_stub, tokens_of(1), sequence_id)
    assert live_sequences(small_server) == 1
    deadline = time.monotonic() + 10
    while live_sequences(small_server) and time.monotonic() < deadline:  # the reaper frees it
        time.sleep(0.2)
    assert live_sequences(small_server) == 0
    assert rpc_code(lambda: step(small_stub, tokens_of(1), sequence_id)) == grpc.StatusCode.NOT_FOUND


# -- version pinning --------------------------------------------------------
def version_states(status_stub, model: str) -> dict:
    message = get_model_status_pb2.GetModelStatusRequest()
    message.model_spec.name = model
    response = status_stub.GetModelStatus(message, TIMEOUT)
    names = get_model_status_pb2.ModelVersionStatus.State.Name
    return {entry.version: names(entry.state) for entry in response.model_version_status}


def wait_for(condition, timeout: float = 60):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_a_sequence_stays_on_its_version_through_a_hot_reload(tmp_path):
    base = str(tmp_path / "pinned")
    write_char_lm(base, 1, seed=0)
    server = start_server({"pinned": base})
    try:
        with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
            predict = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            status = model_service_pb2_grpc.ModelServiceStub(channel)
            past, after, fresh = tokens_of(4), tokens_of(3), tokens_of(3)
            old = sequence_id_of(step(predict, past, control=START, model="pinned"))
            write_char_lm(base, 2, seed=1)
            wait_for(lambda: version_states(status, "pinned").get(2) == "AVAILABLE")
            time.sleep(0.5)  # a few more polls: v1 is no longer aspired
            response = predict.Predict(request("step", {"tokens": after}, old, model="pinned"), TIMEOUT)
            assert response.model_spec.version.value == 1
            v1 = Oracle(os.path.join(base, "1"))
            whole = v1.step(np.concatenate([past, after], axis=1))[0]
            np.testing.assert_allclose(outputs_of(response)["logits"], whole[:, 4:], atol=1e-5)
            new = predict.Predict(request("step", {"tokens": fresh}, control=START, model="pinned"), TIMEOUT)
            assert new.model_spec.version.value == 2
            v2 = Oracle(os.path.join(base, "2"))
            np.testing.assert_allclose(outputs_of(new)["logits"], v2.step(fresh)[0], atol=1e-5)
            assert version_states(status, "pinned") == {2: "AVAILABLE", 1: "AVAILABLE"}
            wrong = request("step", {"tokens": after}, old, model="pinned", version=2)
            assert rpc_code(lambda: predict.Predict(wrong, TIMEOUT)) == grpc.StatusCode.INVALID_ARGUMENT
            step(predict, after, old, END, model="pinned")
            wait_for(lambda: version_states(status, "pinned").get(1) == "END")
            step(predict, after, sequence_id_of(outputs_of(new)), END, model="pinned")
    finally:
        server.stop(grace=2)
