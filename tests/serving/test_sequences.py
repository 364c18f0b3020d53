"""Server-side sequences on `step` / `generate`, spoken to with stock TF Serving stubs.

The controls are OpenVINO Model Server's documented stateful API
(`sequence_id` DT_UINT64 [1], `sequence_control_input` DT_UINT32 [1]: 0
none, 1 start, 2 end; ours: 3 fork) and its status codes. Requests are
built with `tensorflow_serving.apis` and `tf.make_tensor_proto`, sent over
real gRPC (and REST) to a real server; the numeric oracle is the export's
own `step` / `generate` called through TensorFlow's loader with the whole
input and client-held state. Limits, expiry and version pinning are in
test_sequence_limits.py.
"""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request

import grpc
import numpy as np
import pytest
import tensorflow as tf
from conftest import LM, start_server
from sequence_requests import (
    END,
    FORK,
    START,
    TIMEOUT,
    Oracle,
    generation_inputs,
    outputs_of,
    request,
    rpc_code,
    sequence_id_of,
    step,
    tokens_of,
)
from serving_savedmodels import STATE_SIZE
from tensorflow_serving.apis import prediction_service_pb2_grpc


@pytest.fixture(scope="module")
def seq_server(exports):
    """A server of the LM with the sequence defaults (500 per model, 300 s idle)."""
    running = start_server({LM: exports[LM]})
    yield running
    running.stop(grace=2)


@pytest.fixture(scope="module")
def stub(seq_server):
    with grpc.insecure_channel(f"127.0.0.1:{seq_server.grpc_port}") as channel:
        yield prediction_service_pb2_grpc.PredictionServiceStub(channel)


@pytest.fixture(scope="module")
def oracle(lm_path):
    return Oracle(lm_path)


def test_twenty_server_side_step_calls_equal_one_client_held_step_on_the_whole_input(stub, oracle):
    tokens = tokens_of(20)
    first = step(stub, tokens[:, :1], control=START)
    sequence_id = sequence_id_of(first)
    logits = [first["logits"]]
    for t in range(1, 19):
        logits.append(step(stub, tokens[:, t : t + 1], sequence_id)["logits"])
    last = step(stub, tokens[:, 19:], sequence_id, END, output_filter=["logits", "state"])
    logits.append(last["logits"])
    want_logits, want_state = oracle.step(tokens)
    np.testing.assert_allclose(np.concatenate(logits, axis=1), want_logits, atol=1e-5)
    np.testing.assert_allclose(last["state"], want_state, atol=1e-5)
    assert rpc_code(lambda: step(stub, tokens[:, :1], sequence_id)) == grpc.StatusCode.NOT_FOUND


def test_server_side_generate_in_chunks_equals_one_greedy_generate(stub, oracle):
    prompt = tokens_of(5)
    want = oracle.generate(prompt, 20, temperature=0.0, seed=3)
    inputs = generation_inputs(prompt, 5, seed=3)
    response = stub.Predict(request("generate", inputs, control=START), TIMEOUT)
    outputs = outputs_of(response)
    assert set(outputs) == {"tokens", "sequence_id"}
    sequence_id, pieces = sequence_id_of(outputs), [outputs["tokens"]]
    for chunk in range(3):  # the kept state is before the last token: the next call feeds it
        inputs = generation_inputs(pieces[-1][:, -1:], 5, seed=3)
        control = END if chunk == 2 else None
        pieces.append(
            outputs_of(stub.Predict(request("generate", inputs, sequence_id, control), TIMEOUT))["tokens"]
        )
    np.testing.assert_array_equal(np.concatenate(pieces, axis=1), want)


def test_a_sampled_server_side_generate_equals_client_held_generate_with_the_same_seed(stub, oracle):
    prompt = tokens_of(4)
    inputs = generation_inputs(prompt, 12, temperature=0.9, seed=77)
    outputs = outputs_of(stub.Predict(request("generate", inputs, control=START), TIMEOUT))
    np.testing.assert_array_equal(outputs["tokens"], oracle.generate(prompt, 12, temperature=0.9, seed=77))
    step(stub, tokens_of(1), sequence_id_of(outputs), END)


def test_start_with_a_chosen_id_echoes_it_and_state_is_returned_only_when_asked(stub):
    outputs = step(stub, tokens_of(3), 4242, START)
    assert set(outputs) == {"logits", "sequence_id"} and sequence_id_of(outputs) == 4242
    response = stub.Predict(request("step", {"tokens": tokens_of(1)}, 4242, None, ["state"]), TIMEOUT)
    assert response.outputs["sequence_id"].dtype == tf.uint64.as_datatype_enum
    assert set(response.outputs) == {"state", "sequence_id"}
    assert response.outputs["state"].tensor_shape.dim[1].size == STATE_SIZE
    only_id = stub.Predict(request("step", {"tokens": tokens_of(1)}, 4242, None, ["sequence_id"]), TIMEOUT)
    assert set(only_id.outputs) == {"sequence_id"}
    step(stub, tokens_of(1), 4242, END)


def test_forks_diverge_only_by_their_own_inputs_and_leave_the_parent_unchanged(stub, oracle):
    past, left, right, more, parent_next = (tokens_of(n) for n in (6, 3, 4, 2, 3))
    parent = sequence_id_of(step(stub, past, control=START))
    left_out = step(stub, left, parent, FORK)
    right_out = step(stub, right, parent, FORK)
    left_id, right_id = sequence_id_of(left_out), sequence_id_of(right_out)
    assert len({parent, left_id, right_id}) == 3
    whole = oracle.step(np.concatenate([past, left], axis=1))[0]
    np.testing.assert_allclose(left_out["logits"], whole[:, 6:], atol=1e-5)
    whole = oracle.step(np.concatenate([past, right], axis=1))[0]
    np.testing.assert_allclose(right_out["logits"], whole[:, 6:], atol=1e-5)
    left_more = step(stub, more, left_id, END)["logits"]
    whole = oracle.step(np.concatenate([past, left, more], axis=1))[0]
    np.testing.assert_allclose(left_more, whole[:, 9:], atol=1e-5)
    parent_out = step(stub, parent_next, parent, END)["logits"]
    whole = oracle.step(np.concatenate([past, parent_next], axis=1))[0]
    np.testing.assert_allclose(parent_out, whole[:, 6:], atol=1e-5)
    step(stub, tokens_of(1), right_id, END)


def test_a_start_with_state_resumes_a_snapshot(stub, oracle):
    past, future = tokens_of(7), tokens_of(5)
    first = step(stub, past, control=START, output_filter=["state"])
    step(stub, tokens_of(1), sequence_id_of(first), END)
    resume = stub.Predict(
        request("step", {"tokens": future[:, :2], "state": first["state"]}, control=START), TIMEOUT
    )
    resumed = sequence_id_of(outputs_of(resume))
    rest = step(stub, future[:, 2:], resumed, END)["logits"]
    got = np.concatenate([outputs_of(resume)["logits"], rest], axis=1)
    np.testing.assert_allclose(got, oracle.step(np.concatenate([past, future], axis=1))[0][:, 7:], atol=1e-5)


def test_every_control_error_has_ovms_code_and_leaves_the_state_unchanged(stub, oracle):
    past, after = tokens_of(4), tokens_of(3)
    sequence_id = sequence_id_of(step(stub, past, control=START))
    state = np.zeros((1, STATE_SIZE), np.float32)
    bad = {
        "unknown id": (request("step", {"tokens": after}, 987654321), "NOT_FOUND"),
        "fork of an unknown id": (request("step", {"tokens": after}, 987654321, FORK), "NOT_FOUND"),
        "end of an unknown id": (request("step", {"tokens": after}, 987654321, END), "NOT_FOUND"),
        "start on an id in use": (request("step", {"tokens": after}, sequence_id, START), "ALREADY_EXISTS"),
        "control 7": (request("step", {"tokens": after}, sequence_id, 7), "INVALID_ARGUMENT"),
        "no id mid-sequence": (request("step", {"tokens": after}, None, 0), "INVALID_ARGUMENT"),
        "id 0 at end": (request("step", {"tokens": after}, 0, END), "INVALID_ARGUMENT"),
        "state mid-sequence": (
            request("step", {"tokens": after, "state": state}, sequence_id),
            "INVALID_ARGUMENT",
        ),
        "two rows": (request("step", {"tokens": np.repeat(after, 2, 0)}, sequence_id), "INVALID_ARGUMENT"),
        "serving_default": (request("serving_default", {"tokens": after}, sequence_id), "INVALID_ARGUMENT"),
        "a token the model rejects": (
            request("step", {"tokens": np.array([[999]], np.int32)}, sequence_id),
            "INVALID_ARGUMENT",
        ),
    }
    wrong_dtype = request("step", {"tokens": after})
    wrong_dtype.inputs["sequence_id"].CopyFrom(tf.make_tensor_proto([sequence_id], dtype=tf.int64))
    bad["sequence_id as int64"] = (wrong_dtype, "INVALID_ARGUMENT")
    wrong_shape = request("step", {"tokens": after}, control=0)
    wrong_shape.inputs["sequence_id"].CopyFrom(tf.make_tensor_proto([sequence_id, 1], dtype=tf.uint64))
    bad["sequence_id of shape [2]"] = (wrong_shape, "INVALID_ARGUMENT")
    codes = {
        name: rpc_code(lambda message=message: stub.Predict(message, TIMEOUT))
        for name, (message, _) in bad.items()
    }
    assert codes == {name: grpc.StatusCode[code] for name, (_, code) in bad.items()}
    got = step(stub, after, sequence_id, END)["logits"]
    np.testing.assert_allclose(got, oracle.step(np.concatenate([past, after], axis=1))[0][:, 4:], atol=1e-5)


def test_concurrent_calls_on_one_sequence_run_one_after_another(stub, oracle):
    past, token = tokens_of(3), tokens_of(1)
    sequence_id = sequence_id_of(step(stub, past, control=START))
    errors = []

    def call():
        try:
            step(stub, token, sequence_id)
        except grpc.RpcError as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=call) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    final = step(stub, token, sequence_id, END, output_filter=["state"])["state"]
    # Every call fed the same token: only if none overlapped are all nine in the state.
    whole = np.concatenate([past] + [token] * 9, axis=1)
    np.testing.assert_allclose(final, oracle.step(whole)[1], atol=1e-5)


def test_stock_requests_without_sequence_inputs_behave_as_before(stub, oracle):
    tokens, state = tokens_of(5), np.zeros((1, STATE_SIZE), np.float32)
    outputs = outputs_of(stub.Predict(request("step", {"tokens": tokens, "state": state}), TIMEOUT))
    assert set(outputs) == {"logits", "state"}
    want_logits, want_state = oracle.step(tokens)
    np.testing.assert_allclose(outputs["logits"], want_logits, atol=1e-5)
    np.testing.assert_allclose(outputs["state"], want_state, atol=1e-5)
    inputs = dict(generation_inputs(tokens, 6, temperature=0.5, seed=9), state=state)
    outputs = outputs_of(stub.Predict(request("generate", inputs), TIMEOUT))
    assert set(outputs) == {"tokens", "state"}
    np.testing.assert_array_equal(outputs["tokens"], oracle.generate(tokens, 6, temperature=0.5, seed=9))
    missing = request("step", {"tokens": tokens})  # no state, no sequence: TF Serving's error
    with pytest.raises(grpc.RpcError) as info:
        stub.Predict(missing, TIMEOUT)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "input size does not match signature" in info.value.details()


def rest_predict(port: int, body: dict, path: str = f"/v1/models/{LM}:predict") -> tuple[int, dict]:
    data = json.dumps(body).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=TIMEOUT) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_a_rest_sequence_round_trip_with_ovms_columnar_inputs(seq_server, oracle):
    port, tokens = seq_server.rest_port, tokens_of(6)
    status, body = rest_predict(
        port,
        {
            "signature_name": "step",
            "inputs": {"tokens": tokens[:, :4].tolist(), "sequence_control_input": [1]},
        },
    )
    assert status == 200 and set(body["outputs"]) == {"logits", "sequence_id"}
    (sequence_id,) = body["outputs"]["sequence_id"]
    assert (
        rest_predict(
            port,
            {
                "signature_name": "step",
                "inputs": {"tokens": [[1]], "sequence_id": [sequence_id], "sequence_control_input": [1]},
            },
        )[0]
        == 409
    )
    status, rest = rest_predict(
        port,
        {
            "signature_name": "step",
            "inputs": {
                "tokens": tokens[:, 4:].tolist(),
                "sequence_id": [sequence_id],
                "sequence_control_input": [2],
            },
        },
    )
    assert status == 200 and rest["outputs"]["sequence_id"] == [sequence_id]
    got = np.concatenate([np.array(body["outputs"]["logits"]), np.array(rest["outputs"]["logits"])], axis=1)
    np.testing.assert_allclose(got, oracle.step(tokens)[0], atol=1e-5)
    status, error = rest_predict(
        port, {"signature_name": "step", "inputs": {"tokens": [[1]], "sequence_id": [sequence_id]}}
    )
    assert status == 404 and "Sequence with provided ID does not exist" in error["error"]
