"""Malformed requests at both APIs of a `rnnserve serve` process: proper errors, no crash.

Hypothesis generates random TensorProtos (any dtype enum, odd shapes,
random bytes and values), aliases, signature and model names, truncated
request bytes, random JSON bodies and paths. Every reply must be a status
the API defines — never UNKNOWN or an "Internal error" (an unhandled
exception) — the process must stay up, and a valid request must still
succeed afterwards.
"""

import json
import string
import urllib.error
import urllib.request

import grpc
import numpy as np
import pytest
from conftest import LM
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tensorflow.core.framework import tensor_pb2, types_pb2
from tensorflow_serving.apis import predict_pb2

from rnnserve.serving.client import PredictionClient

EXAMPLES = 200
SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
ALLOWED_GRPC = {
    "OK",
    "INVALID_ARGUMENT",
    "NOT_FOUND",
    "FAILED_PRECONDITION",
    "UNIMPLEMENTED",
    "RESOURCE_EXHAUSTED",
    "INTERNAL",
}
ALIASES = ["tokens", "state", "max_new_tokens", "temperature", "top_k", "seed", "text", "prompt"]
SIGNATURES = [
    "serving_default",
    "step",
    "generate",
    "generate_text",
    "encode",
    "decode",
    "__saved_model_init_op",
    "",
]

names = st.text(string.ascii_letters + string.digits + "_:/.%-", max_size=12)
dims = st.lists(st.one_of(st.integers(-2, 6), st.sampled_from([0, 10**6, 2**40])), max_size=4)


@st.composite
def tensor_protos(draw):
    proto = tensor_pb2.TensorProto(
        dtype=draw(st.one_of(st.sampled_from(types_pb2.DataType.values()), st.integers(0, 200)))
    )
    for size in draw(dims):
        proto.tensor_shape.dim.add(size=size)
    proto.tensor_shape.unknown_rank = draw(st.booleans())
    kind = draw(st.sampled_from(["content", "float", "int", "int64", "string", "bool", "half", "none"]))
    if kind == "content":
        proto.tensor_content = draw(st.binary(max_size=64))
    elif kind == "float":
        proto.float_val.extend(draw(st.lists(st.floats(width=32), max_size=8)))
    elif kind == "int":
        proto.int_val.extend(draw(st.lists(st.integers(-(2**31), 2**31 - 1), max_size=8)))
    elif kind == "int64":
        proto.int64_val.extend(draw(st.lists(st.integers(-(2**63), 2**63 - 1), max_size=8)))
    elif kind == "string":
        proto.string_val.extend(draw(st.lists(st.binary(max_size=8), max_size=4)))
    elif kind == "bool":
        proto.bool_val.extend(draw(st.lists(st.booleans(), max_size=8)))
    elif kind == "half":
        proto.half_val.extend(draw(st.lists(st.integers(0, 65535), max_size=8)))
    return proto


@st.composite
def predict_requests(draw):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = draw(st.one_of(st.just(LM), names))
    request.model_spec.signature_name = draw(st.one_of(st.sampled_from(SIGNATURES), names))
    if draw(st.booleans()):
        request.model_spec.version.value = draw(st.integers(-5, 5))
    for alias in draw(st.lists(st.one_of(st.sampled_from(ALIASES), names), max_size=6, unique=True)):
        request.inputs[alias].CopyFrom(draw(tensor_protos()))
    request.output_filter.extend(
        draw(st.lists(st.one_of(st.sampled_from(["logits", "state", "tokens"]), names), max_size=2))
    )
    return request


def valid_request():
    request = predict_pb2.PredictRequest()
    request.model_spec.name = LM
    request.inputs["tokens"].CopyFrom(
        tensor_pb2.TensorProto(
            dtype=types_pb2.DT_INT32, int_val=[1, 2], tensor_shape={"dim": [{"size": 1}, {"size": 2}]}
        )
    )
    return request


@pytest.fixture(scope="module")
def raw_predict(server_process):
    channel = grpc.insecure_channel(f"127.0.0.1:{server_process.grpc_port}")
    method = channel.unary_unary(
        "/tensorflow.serving.PredictionService/Predict",
        request_serializer=lambda data: data,  # send bytes exactly as drawn
        response_deserializer=predict_pb2.PredictResponse.FromString,
    )
    yield method
    channel.close()


def _check_grpc(method, payload: bytes):
    try:
        method(payload, timeout=30)
    except grpc.RpcError as error:
        assert error.code().name in ALLOWED_GRPC, (error.code(), error.details())
        assert not (error.details() or "").startswith("Internal error"), error.details()


@SETTINGS
@given(request=predict_requests(), cut=st.one_of(st.none(), st.floats(0, 1)))
def test_grpc_fuzz_replies_are_proper_errors(raw_predict, request, cut):
    payload = request.SerializeToString()
    if cut is not None:
        payload = payload[: int(len(payload) * cut)]  # truncated bytes
    _check_grpc(raw_predict, payload)


json_values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(2**70), 2**70),
        st.floats(allow_nan=True),
        st.text(max_size=6),
        st.fixed_dictionaries({"b64": st.text(max_size=8)}),
    ),
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.sampled_from(ALIASES + ["b64", "x"]), children, max_size=3),
    ),
    max_leaves=12,
)
bodies = st.one_of(
    st.fixed_dictionaries(
        {"instances": json_values},
        optional={"signature_name": st.one_of(st.sampled_from(SIGNATURES), json_values)},
    ),
    st.fixed_dictionaries(
        {"inputs": json_values},
        optional={"signature_name": st.one_of(st.sampled_from(SIGNATURES), json_values)},
    ),
    st.fixed_dictionaries({"examples": json_values}, optional={"context": json_values}),
    json_values,
)
paths = st.one_of(
    st.sampled_from(
        [
            f"/v1/models/{LM}:predict",
            f"/v1/models/{LM}/versions/1:predict",
            f"/v1/models/{LM}:classify",
            f"/v1/models/{LM}:regress",
            f"/v1/models/{LM}/labels/x:predict",
            f"/v1/models/{LM}/versions/99999999999999999999:predict",
        ]
    ),
    names.map(lambda n: f"/v1/models/{n}:predict"),
)


@SETTINGS
@given(
    path=paths,
    body=bodies,
    cut=st.one_of(st.none(), st.floats(0, 1)),
    method=st.sampled_from(["POST", "POST", "GET", "PUT"]),
)
def test_rest_fuzz_replies_are_proper_json_errors(server_process, path, body, cut, method):
    data = json.dumps(body, allow_nan=True).encode()
    if cut is not None:
        data = data[: int(len(data) * cut)]
    request = urllib.request.Request(
        f"http://127.0.0.1:{server_process.rest_port}{path}", data=data, method=method
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as reply:
            status, text = reply.status, reply.read()
    except urllib.error.HTTPError as error:
        status, text = error.code, error.read()
    doc = json.loads(text)
    assert status in (200, 400, 404, 429, 501, 503), (status, doc)
    if status != 200:
        assert isinstance(doc.get("error"), str) and not doc["error"].startswith("Internal error"), doc


def test_server_survives_the_fuzzing_and_still_serves(server_process, raw_predict):
    assert server_process.process.poll() is None
    response = raw_predict(valid_request().SerializeToString(), timeout=30)
    assert response.outputs["logits"].tensor_shape.dim[2].size == 34
    client = PredictionClient(f"127.0.0.1:{server_process.grpc_port}", timeout=30)
    assert client.predict(LM, {"tokens": np.array([[3]], np.int32)})["logits"].shape == (1, 1, 34)
    status, _ = (
        urllib.request.urlopen(f"http://127.0.0.1:{server_process.rest_port}/v1/models/{LM}").status,
        None,
    )
    assert status == 200
