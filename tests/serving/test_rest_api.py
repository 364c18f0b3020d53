"""The REST API over real HTTP (urllib): both formats, b64, status/metadata, error codes.

Oracles: direct SavedModel calls, TF Serving's documented JSON shapes
(`predictions` / `outputs`, `{"b64": ...}`, `{"error": ...}`), protobuf's
JSON mapping of GetModelStatusResponse, and TF Serving's HTTP code map.
"""

import base64
import http.client
import json
import urllib.error
import urllib.request

import numpy as np
import pytest
from conftest import CLS, LM, start_server
from google.protobuf import json_format
from serving_savedmodels import CLASS_LABELS, CLASSIFY_BIAS, CLASSIFY_WEIGHTS, STATE_SIZE
from tensorflow_serving.apis import get_model_metadata_pb2, get_model_status_pb2


def rest(url: str, body=None, raw: bytes | None = None):
    """(HTTP status, parsed JSON) of one request."""
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    request = urllib.request.Request(url, data=data, method="POST" if data is not None else "GET")
    try:
        with urllib.request.urlopen(request, timeout=30) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_row_format_single_input_returns_predictions(rest_url, direct):
    status, doc = rest(f"{rest_url}/v1/models/{LM}:predict", {"instances": [[3, 4, 5], [6, 7, 8]]})
    assert status == 200 and list(doc) == ["predictions"]
    expected = direct("serving_default", tokens=np.array([[3, 4, 5], [6, 7, 8]], np.int32))["logits"]
    np.testing.assert_allclose(np.array(doc["predictions"], np.float32), expected, rtol=1e-5, atol=1e-6)


def test_row_format_named_inputs_and_several_outputs_gives_objects(rest_url, direct):
    state = np.full((STATE_SIZE,), 0.25, np.float32).tolist()
    body = {
        "signature_name": "step",
        "instances": [{"tokens": [3, 4], "state": state}, {"tokens": [5, 6], "state": state}],
    }
    status, doc = rest(f"{rest_url}/v1/models/{LM}/versions/1:predict", body)
    assert status == 200
    expected = direct(
        "step", tokens=np.array([[3, 4], [5, 6]], np.int32), state=np.array([state, state], np.float32)
    )
    assert [sorted(row) for row in doc["predictions"]] == [["logits", "state"]] * 2
    for name in ("logits", "state"):
        got = np.array([row[name] for row in doc["predictions"]], np.float32)
        np.testing.assert_allclose(got, expected[name], rtol=1e-5, atol=1e-6)


def test_columnar_format_with_scalars_and_strings(rest_url, direct):
    body = {
        "signature_name": "generate_text",
        "inputs": {"prompt": ["hello", "ab"], "max_new_tokens": 5, "temperature": 0.0, "top_k": 0, "seed": 7},
    }
    status, doc = rest(f"{rest_url}/v1/models/{LM}:predict", body)
    assert status == 200
    expected = direct(
        "generate_text",
        prompt=np.array([b"hello", b"ab"]),
        max_new_tokens=np.int32(5),
        temperature=np.float32(0.0),
        top_k=np.int32(0),
        seed=np.int64(7),
    )["text"]
    assert doc == {"outputs": [text.decode() for text in expected]}


def test_columnar_multiple_outputs_are_an_object(rest_url, direct):
    status, doc = rest(
        f"{rest_url}/v1/models/{LM}:predict", {"signature_name": "encode", "inputs": {"text": ["abc", "x"]}}
    )
    expected = direct("encode", text=np.array([b"abc", b"x"]))
    assert status == 200
    assert doc == {
        "outputs": {"lengths": expected["lengths"].tolist(), "tokens": expected["tokens"].tolist()}
    }


def test_b64_strings_are_decoded_to_bytes(rest_url, direct):
    encoded = base64.b64encode("héllo".encode()).decode()
    status, doc = rest(
        f"{rest_url}/v1/models/{LM}:predict",
        {"signature_name": "encode", "inputs": {"text": [{"b64": encoded}]}},
    )
    assert status == 200
    assert doc["outputs"]["tokens"] == direct("encode", text=np.array(["héllo".encode()]))["tokens"].tolist()


def test_floats_are_written_in_shortest_round_trip_form(rest_url):
    state = [0.1] * STATE_SIZE
    status, doc = rest(
        f"{rest_url}/v1/models/{LM}:predict",
        {"signature_name": "step", "inputs": {"tokens": [[1]], "state": [state]}},
    )
    text = json.dumps(doc)
    assert status == 200 and "0000000" not in text  # no float32->double noise digits


def test_model_status_json_matches_tf_servings_fields(rest_url):
    status, doc = rest(f"{rest_url}/v1/models/{LM}")
    assert status == 200
    assert doc == {
        "model_version_status": [
            {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
        ]
    }
    json_format.ParseDict(doc, get_model_status_pb2.GetModelStatusResponse())  # valid proto JSON
    assert rest(f"{rest_url}/v1/models/{LM}/versions/1")[1] == doc


def test_metadata_json_has_model_spec_and_signature_def(rest_url):
    status, doc = rest(f"{rest_url}/v1/models/{LM}/metadata")
    assert status == 200
    assert doc["model_spec"] == {"name": LM, "signature_name": "", "version": "1"}
    signatures = json_format.ParseDict(
        doc["metadata"]["signature_def"], get_model_metadata_pb2.SignatureDefMap()
    )
    assert signatures.signature_def["step"].inputs["state"].tensor_shape.dim[1].size == STATE_SIZE
    assert "generate" in doc["metadata"]["signature_def"]["signature_def"]


def test_paths_are_case_insensitive_like_tf_serving(rest_url):
    assert rest(f"{rest_url}/V1/MODELS/{LM}:PREDICT", {"instances": [[1]]})[0] == 200


def test_classify_and_regress_endpoints(rest_url):
    examples = {"examples": [{"x": [1.0, 0.5]}, {"x": [-2.0, 3.0]}]}
    y = (np.array([[1.0, 0.5], [-2.0, 3.0]], np.float32) @ CLASSIFY_WEIGHTS + CLASSIFY_BIAS)[:, 0]
    status, doc = rest(f"{rest_url}/v1/models/{CLS}:classify", examples)
    assert status == 200
    for row, classes in enumerate(doc["results"]):
        assert [label for label, _ in classes] == list(CLASS_LABELS)
        assert classes[1][1] == pytest.approx(1 / (1 + np.exp(-2 * y[row])), rel=1e-5)
    status, doc = rest(f"{rest_url}/v1/models/{CLS}:regress", dict(examples, signature_name="regress_x"))
    assert status == 200 and doc["results"] == pytest.approx(y.tolist(), rel=1e-6)


ERRORS = [
    # (path, body, HTTP status, message or fragment)
    ("/v1/models/nope:predict", {"instances": [[1]]}, 404, "Servable not found for request: Latest(nope)"),
    (
        f"/v1/models/{LM}/versions/3:predict",
        {"instances": [[1]]},
        404,
        "Servable not found for request: Specific(charlm, 3)",
    ),
    (
        f"/v1/models/{LM}/labels/stable:predict",
        {"instances": [[1]]},
        400,
        "Unrecognized servable version label: stable",
    ),
    ("/v1/models/nope", None, 404, "Could not find any versions of model nope"),
    ("/v1/models/nope/metadata", None, 404, "Servable not found for request: Latest(nope)"),
    ("/v1/models", None, 400, "Missing model name in request."),
    (f"/v1/models/{LM}:explain", {}, 400, f"Malformed request: POST /v1/models/{LM}:explain"),
    (
        f"/v1/models/{LM}:predict",
        {"signature_name": "nope", "instances": [[1]]},
        400,
        'Serving signature name: "nope" not found in signature def',
    ),
    (f"/v1/models/{LM}:predict", {"signature_name": 3}, 400, "'signature_name' key must be a string value."),
    (f"/v1/models/{LM}:predict", {"instances": [[1.5]]}, 400, "is not of expected type: int32"),
    (
        f"/v1/models/{LM}:predict",
        {"instances": [[1]], "inputs": [[1]]},
        400,
        "expecting only one of 'inputs' or 'instances'",
    ),
    (f"/v1/models/{LM}:predict", {"foo": 1}, 400, "Missing 'inputs' or 'instances' key"),
    (f"/v1/models/{LM}:predict", {"instances": []}, 400, "No values in 'instances' array"),
    (f"/v1/models/{LM}:predict", {"instances": [[1, 2], [3]]}, 400, "Expecting tensor size: 2 but got: 1"),
    (
        f"/v1/models/{LM}:predict",
        {"signature_name": "step", "instances": [[1]]},
        400,
        "instances is a plain list, but expecting list of objects as multiple input tensors",
    ),
    (
        f"/v1/models/{LM}:predict",
        {"signature_name": "step", "inputs": {"tokens": [[1]]}},
        400,
        "Missing named input: state in 'inputs' object.",
    ),
    (
        f"/v1/models/{LM}:predict",
        {"signature_name": "encode", "inputs": {"text": [{"b64": "%%%"}]}},
        400,
        "Unable to base64 decode",
    ),
    (
        f"/v1/models/{LM}:predict",
        {"inputs": [1, 2]},
        400,
        "transpose expects a vector of size 1. But input(1) is a vector of size 2",  # the session's
    ),
    (
        f"/v1/models/{LM}:predict",
        {"signature_name": "__saved_model_init_op", "instances": [[1]]},
        400,
        "Failed to get input map for signature: __saved_model_init_op",
    ),
    (
        f"/v1/models/{CLS}:predict",
        {"signature_name": "complex_abs", "inputs": [1]},
        501,
        "Conversion of JSON Value",
    ),
    (f"/v1/models/{CLS}:classify", {"examples": []}, 400, "'examples' value is an empty array"),
    (
        f"/v1/models/{CLS}:regress",
        {"examples": [{"x": [1.0, 2.0]}]},
        400,
        "Expected one output Tensor.",  # TF Serving's regressor.cc: structure, not method_name
    ),
]


@pytest.mark.parametrize("path, body, code, message", ERRORS, ids=[e[3][:40] for e in ERRORS])
def test_errors_use_tf_servings_http_codes_and_error_bodies(rest_url, path, body, code, message):
    status, doc = rest(rest_url + path, body)
    assert status == code
    assert list(doc) == ["error"] and message in doc["error"]


@pytest.mark.parametrize("raw", [b"", b"{not json", b"[1, 2]", b"\xff\xfe", b'{"instances": [[1]'])
def test_unparseable_bodies_are_400_with_a_json_parse_message(rest_url, raw):
    status, doc = rest(f"{rest_url}/v1/models/{LM}:predict", raw=raw)
    assert status == 400 and ("JSON Parse error" in doc["error"] or "Is not object" in doc["error"])


def test_metrics_page_has_tf_servings_metric_names(rest_url):
    rest(f"{rest_url}/v1/models/{LM}:predict", {"instances": [[1]]})
    with urllib.request.urlopen(f"{rest_url}/monitoring/prometheus/metrics", timeout=30) as reply:
        page = reply.read().decode()
    assert f':tensorflow:serving:request_count{{model_name="{LM}",status="OK"}}' in page
    assert ":tensorflow:serving:request_latency_bucket{" in page and 'entrypoint="REST"' in page
    assert ':tensorflow:cc:saved_model:load_attempt_count{model_path="' in page and 'status="success"' in page
    assert ":tensorflow:serving:model_warmup_latency_bucket{" in page


@pytest.fixture(scope="module")
def limited_server(exports):
    running = start_server({LM: exports[LM]}, max_request_bytes=4096)
    yield running
    running.stop(grace=2)


@pytest.fixture(scope="module")
def impatient_server(exports):
    """A 1 ms TensorFlow run budget for REST requests."""
    running = start_server({LM: exports[LM]}, rest_api_timeout_in_ms=1)
    yield running
    running.stop(grace=2)


def test_oversized_body_is_refused_with_429_before_reading(limited_server):
    connection = http.client.HTTPConnection("127.0.0.1", limited_server.rest_port, timeout=30)
    connection.putrequest("POST", f"/v1/models/{LM}:predict")
    connection.putheader("Content-Length", str(10**9))
    connection.endheaders()
    reply = connection.getresponse()
    assert reply.status == 429 and "larger than the limit" in json.loads(reply.read())["error"]
    connection.close()


def test_run_timeout_is_504_deadline_exceeded(impatient_server):
    """64 sampling steps over 2048 rows take far longer than 1 ms on any CPU."""
    rows = 2048
    body = {
        "signature_name": "generate",
        "inputs": {
            "tokens": [[1]] * rows,
            "state": [[0.0] * STATE_SIZE] * rows,
            "max_new_tokens": 64,
            "temperature": 1.0,
            "top_k": 0,
            "seed": 0,
        },
    }
    status, doc = rest(f"http://127.0.0.1:{impatient_server.rest_port}/v1/models/{LM}:predict", body)
    assert status == 504 and doc["error"]
