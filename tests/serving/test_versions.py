"""Version management: hot reload, broken versions, policies, labels, warmup, config reload.

Oracles: what is on disk (which integer directories exist), the version a
response says answered, and a direct SavedModel call of that version.
"""

import os
import shutil
import threading
import time

import numpy as np
import pytest
import tensorflow as tf
from conftest import LM, start_server
from serving_savedmodels import warmup_requests, write_char_lm, write_warmup_file
from tensorflow_serving.config import model_server_config_pb2

from rnnserve.serving.client import PredictionClient
from rnnserve.serving.errors import ServingError

TOKENS = np.array([[3, 4, 5]], np.int32)


def wait_for(condition, timeout=60.0, every=0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(every)
    raise AssertionError("condition not reached in time")


def states(client, model=LM):
    return {entry.version: (entry.state, entry.error_code) for entry in client.status(model)}


@pytest.fixture(scope="module")
def templates(tmp_path_factory, lm_path):
    """Two LM exports with different weights, written once; tests copy them into place."""
    root = str(tmp_path_factory.mktemp("templates"))
    return {1: lm_path, 2: write_char_lm(root, 2, seed=2)}


@pytest.fixture
def install(templates):
    def install(base, version, seed=None):
        """Copies an export into base/<version> the way the exporter does: tmp dir, then rename."""
        tmp = os.path.join(base, f".tmp-export-{version}")
        shutil.copytree(templates[seed or (2 if version % 2 == 0 else 1)], tmp)
        os.rename(tmp, os.path.join(base, str(version)))

    return install


@pytest.fixture
def base(tmp_path, install):
    path = str(tmp_path / LM)
    os.makedirs(path)
    install(path, 1)
    return path


def test_hot_reload_serves_the_new_version_without_a_failed_request(base, install):
    server = start_server({LM: base})
    client = PredictionClient(f"127.0.0.1:{server.grpc_port}", timeout=30)
    seen, calls, failures, stop = [], [], [], threading.Event()

    def hammer():
        while not stop.is_set():
            started = time.monotonic()
            try:
                version = client.predict(LM, {"tokens": TOKENS}).version
            except ServingError as error:  # any failure fails the test
                failures.append(error)
                continue
            seen.append(version)
            calls.append((started, time.monotonic(), version))

    threads = [threading.Thread(target=hammer) for _ in range(2)]
    try:
        for thread in threads:
            thread.start()
        wait_for(lambda: len(seen) > 5)
        install(base, 2)
        wait_for(lambda: seen and seen[-1] == 2)
        wait_for(lambda: states(client) == {2: ("AVAILABLE", "OK"), 1: ("END", "OK")})
        count = len(seen)
        wait_for(lambda: len(seen) > count + 5)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
        server.stop(grace=2)
    assert failures == []
    assert set(seen) == {1, 2} and seen[-1] == 2
    first_v2_done = min(end for _, end, version in calls if version == 2)
    assert {version for start, _, version in calls if start > first_v2_done} == {2}  # no going back


def test_the_new_version_answers_with_its_own_weights(base, install):
    server = start_server({LM: base})
    client = PredictionClient(f"127.0.0.1:{server.grpc_port}", timeout=30)
    try:
        install(base, 2)
        wait_for(lambda: states(client).get(2, ("",))[0] == "AVAILABLE")
        got = client.predict(LM, {"tokens": TOKENS})
    finally:
        server.stop(grace=2)
    expected = tf.saved_model.load(os.path.join(base, "2")).signatures["serving_default"](
        tokens=tf.constant(TOKENS)
    )
    assert got.version == 2
    np.testing.assert_allclose(got["logits"], expected["logits"].numpy(), rtol=1e-5, atol=1e-6)


def test_a_corrupt_version_never_replaces_the_served_one_and_status_shows_why(base):
    server = start_server({LM: base})
    client = PredictionClient(f"127.0.0.1:{server.grpc_port}", timeout=30)
    try:
        before = client.predict(LM, {"tokens": TOKENS})["logits"]
        broken = os.path.join(base, ".tmp-broken")
        os.makedirs(broken)
        with open(os.path.join(broken, "saved_model.pb"), "wb") as handle:
            handle.write(b"this is not a protobuf")
        os.rename(broken, os.path.join(base, "2"))
        wait_for(lambda: 2 in states(client) and states(client)[2][0] == "END")
        state, code = states(client)[2]
        assert code != "OK"
        (entry,) = [e for e in client.status(LM) if e.version == 2]
        assert entry.error_message  # the load error, for the operator
        assert states(client)[1] == ("AVAILABLE", "OK")
        outputs = client.predict(LM, {"tokens": TOKENS})
        assert outputs.version == 1
        np.testing.assert_array_equal(outputs["logits"], before)
        with pytest.raises(ServingError) as caught:
            client.predict(LM, {"tokens": TOKENS}, version=2)
        assert caught.value.code == "NOT_FOUND"
    finally:
        server.stop(grace=2)


def test_non_numeric_directories_are_never_loaded(base):
    os.makedirs(os.path.join(base, ".tmp-export-abc"))
    os.makedirs(os.path.join(base, "v3"))
    shutil.copytree(os.path.join(base, "1"), os.path.join(base, "latest"))
    server = start_server({LM: base})
    try:
        client = PredictionClient(f"127.0.0.1:{server.grpc_port}", timeout=30)
        assert states(client) == {1: ("AVAILABLE", "OK")}
    finally:
        server.stop(grace=2)


def test_failing_warmup_keeps_a_version_from_becoming_available(base):
    request = warmup_requests()[0]
    request.model_spec.signature_name = "no_such_signature"
    server = start_server({LM: base})
    try:
        client = PredictionClient(f"127.0.0.1:{server.grpc_port}", timeout=30)
        tmp = os.path.join(base, ".tmp-warm")
        shutil.copytree(os.path.join(base, "1"), tmp)
        write_warmup_file(os.path.join(tmp, "assets.extra", "tf_serving_warmup_requests"), [request])
        os.rename(tmp, os.path.join(base, "2"))
        wait_for(lambda: states(client).get(2, ("",))[0] == "END")
        (entry,) = [e for e in client.status(LM) if e.version == 2]
        assert (entry.state, entry.error_code) == ("END", "FAILED_PRECONDITION")
        assert 'Serving signature key "no_such_signature" not found.' in entry.error_message
        assert client.predict(LM, {"tokens": TOKENS}).version == 1
    finally:
        server.stop(grace=2)


def _config(base, policy_text="", labels=None, name=LM):
    config = model_server_config_pb2.ModelServerConfig()
    entry = config.model_config_list.config.add(name=name, base_path=base, model_platform="tensorflow")
    if policy_text:
        from google.protobuf import text_format

        text_format.Parse(policy_text, entry.model_version_policy)
    for label, version in (labels or {}).items():
        entry.version_labels[label] = version
    return config


def test_version_policies_labels_and_config_reload(base, install):
    for version in (2, 3):
        install(base, version)
    server = start_server({LM: base})
    client = PredictionClient(f"127.0.0.1:{server.grpc_port}", timeout=30)
    try:
        assert states(client) == {3: ("AVAILABLE", "OK")}  # default policy: latest 1
        client.reload_config(_config(base, "all {}", {"stable": 1, "canary": 3}))
        assert {v: s for v, (s, _) in states(client).items()} == {
            3: "AVAILABLE",
            2: "AVAILABLE",
            1: "AVAILABLE",
        }
        assert client.predict(LM, {"tokens": TOKENS}, version_label="stable").version == 1
        assert client.predict(LM, {"tokens": TOKENS}, version_label="canary").version == 3
        assert client.predict(LM, {"tokens": TOKENS}).version == 3
        client.reload_config(_config(base, "specific { versions: 1 versions: 2 }"))
        wait_for(
            lambda: (
                {v: s for v, (s, _) in states(client).items()} == {3: "END", 2: "AVAILABLE", 1: "AVAILABLE"}
            )
        )
        assert client.predict(LM, {"tokens": TOKENS}).version == 2  # latest of the aspired
        with pytest.raises(ServingError) as caught:
            client.reload_config(_config(base, "specific { versions: 1 }", {"gone": 3}))
        assert caught.value.code == "FAILED_PRECONDITION"
        assert caught.value.message == (
            "Request to assign label to version 3 of model charlm, which is not currently available for inference"
        )
        # a config without the model unloads it; a new model name loads
        client.reload_config(_config(base, name="other"))
        with pytest.raises(ServingError) as caught:
            client.predict(LM, {"tokens": TOKENS})
        assert (caught.value.code, caught.value.message) == (
            "NOT_FOUND",
            "Servable not found for request: Latest(charlm)",
        )
        assert {s for s, _ in states(client).values()} == {"END"}
        assert client.predict("other", {"tokens": TOKENS}).version == 3
    finally:
        server.stop(grace=2)


def test_reload_naming_a_model_whose_versions_all_fail_is_unknown(base, tmp_path):
    broken = tmp_path / "broken"
    (broken / "1").mkdir(parents=True)
    server = start_server({LM: base})
    client = PredictionClient(f"127.0.0.1:{server.grpc_port}", timeout=30)
    try:
        config = _config(base)
        config.model_config_list.config.add(name="broken", base_path=str(broken), model_platform="tensorflow")
        with pytest.raises(ServingError) as caught:
            client.reload_config(config)
        assert caught.value.code == "UNKNOWN"
        assert caught.value.message.startswith(
            "Some models did not become available: {{name: broken version: 1}"
        )
        assert client.predict(LM, {"tokens": TOKENS}).version == 1
    finally:
        server.stop(grace=2)
