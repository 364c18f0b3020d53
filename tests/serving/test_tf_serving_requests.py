"""TF Serving's documented answers on TF Serving's kind of test models, over real gRPC and HTTP.

Oracles: TF Serving's quickstart (`g3doc/docker.md`: `{"instances": [1.0, 2.0, 5.0]}`
-> `{"predictions": [2.5, 3.0, 4.5]}` from half_plus_two), y = 0.5 x + 2
computed here, and TF Serving's source for the rules: shapes are left to the
session (`predict_util.cc`), Classify / Regress run on any signature of the
right structure unless `--enable_signature_method_name_check`
(`classifier.cc`, `regressor.cc`), MultiInference feeds one set of examples
to every task's input tensor (`multi_inference.cc`, since 2.4).
"""

import json
import urllib.request

import grpc
import numpy as np
import pytest
from conftest import HALF, TF2, start_server
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_status_pb2,
    inference_pb2,
    predict_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
)
from tf_serving_models import CLASS_LABELS, example, half_plus_two, sigmoid

from rnnserve.serving.tensors import to_ndarray, to_tensor_proto

XS = [1.0, 2.0, 5.0]


@pytest.fixture(scope="module")
def stub(tf_server):
    with grpc.insecure_channel(f"127.0.0.1:{tf_server.grpc_port}") as channel:
        yield prediction_service_pb2_grpc.PredictionServiceStub(channel)


def post(server, path: str, body: dict):
    request = urllib.request.Request(
        f"http://127.0.0.1:{server.rest_port}{path}", data=json.dumps(body).encode(), method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_the_quickstart_curl_answers_the_documented_predictions(tf_server):
    status, body = post(tf_server, f"/v1/models/{HALF}:predict", {"instances": XS})
    assert (status, body) == (200, {"predictions": [2.5, 3.0, 4.5]})


@pytest.mark.parametrize("xs", [XS, [7.0]], ids=["x of shape [3]", "x of shape [1]"])
def test_grpc_predict_of_a_rank_1_x_answers_y_of_the_same_shape(stub, xs):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = HALF
    to_tensor_proto(np.array(xs, np.float32), out=request.inputs["x"])
    response = stub.Predict(request, timeout=30)
    y = to_ndarray(response.outputs["y"])
    assert y.shape == (len(xs),)
    np.testing.assert_allclose(y, half_plus_two(xs))


def test_a_shape_unlike_the_signatures_goes_to_the_session_which_decides(stub):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = TF2  # serving_default's x is [?]; y = 0.5 x + 2 takes any shape
    to_tensor_proto(np.ones((2, 3), np.float32), out=request.inputs["x"])
    response = stub.Predict(request, timeout=30)
    np.testing.assert_allclose(to_ndarray(response.outputs["y"]), np.full((2, 3), 2.5))


def classify_request(model: str, signature: str, xs) -> classification_pb2.ClassificationRequest:
    request = classification_pb2.ClassificationRequest()
    request.model_spec.name, request.model_spec.signature_name = model, signature
    request.input.example_list.examples.extend(example(x) for x in xs)
    return request


def regress_request(model: str, signature: str, xs) -> regression_pb2.RegressionRequest:
    request = regression_pb2.RegressionRequest()
    request.model_spec.name, request.model_spec.signature_name = model, signature
    request.input.example_list.examples.extend(example(x) for x in xs)
    return request


def test_classify_runs_on_a_tf2_predict_signature(stub):
    response = stub.Classify(classify_request(TF2, "classify", XS), timeout=30)
    assert response.model_spec.signature_name == "classify"
    for x, classifications in zip(XS, response.result.classifications):
        labels = [item.label.encode() for item in classifications.classes]
        scores = [item.score for item in classifications.classes]
        assert labels == list(CLASS_LABELS)
        np.testing.assert_allclose(scores, [1 - sigmoid(x), sigmoid(x)], rtol=1e-6)


def test_regress_runs_on_a_tf2_predict_signature(stub):
    response = stub.Regress(regress_request(TF2, "regress", XS), timeout=30)
    np.testing.assert_allclose([r.value for r in response.result.regressions], half_plus_two(XS))


def test_multi_inference_feeds_each_tf2_signature_its_own_input_tensor(stub):
    request = inference_pb2.MultiInferenceRequest()
    for signature, method in (
        ("classify", "tensorflow/serving/classify"),
        ("regress", "tensorflow/serving/regress"),
    ):
        task = request.tasks.add(method_name=method)
        task.model_spec.name, task.model_spec.signature_name = TF2, signature
    request.input.example_list.examples.extend(example(x) for x in XS)
    response = stub.MultiInference(request, timeout=30)
    classified, regressed = response.results
    assert [r.model_spec.signature_name for r in response.results] == ["classify", "regress"]
    np.testing.assert_allclose(
        [c.classes[1].score for c in classified.classification_result.classifications], sigmoid(XS), rtol=1e-6
    )
    np.testing.assert_allclose([r.value for r in regressed.regression_result.regressions], half_plus_two(XS))


def test_tf1_classify_and_regress_signatures_answer_half_plus_two(stub):
    classified = stub.Classify(classify_request(HALF, "classify_x_to_y", XS), timeout=30)
    np.testing.assert_allclose(
        [c.classes[0].score for c in classified.result.classifications], half_plus_two(XS)
    )
    regressed = stub.Regress(regress_request(HALF, "regress_x_to_y2", XS), timeout=30)
    np.testing.assert_allclose([r.value for r in regressed.result.regressions], np.array(XS) * 0.5 + 3)


def test_rest_regress_and_classify_on_half_plus_two(tf_server):
    examples = [{"x": x} for x in XS]
    status, body = post(
        tf_server, f"/v1/models/{HALF}:regress", {"signature_name": "regress_x_to_y", "examples": examples}
    )
    assert status == 200
    np.testing.assert_allclose(body["results"], half_plus_two(XS))
    status, body = post(
        tf_server, f"/v1/models/{TF2}:classify", {"signature_name": "classify", "examples": examples}
    )
    assert status == 200 and [label for label, _ in body["results"][0]] == ["neg", "pos"]


def test_with_the_method_name_check_on_tf2_signatures_are_refused_with_tf_servings_messages(tf_models):
    server = start_server({TF2: tf_models[TF2]}, method_name_check=True, rest_api_port=None)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
            checked = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            with pytest.raises(grpc.RpcError) as caught:
                checked.Classify(classify_request(TF2, "classify", XS), timeout=30)
            assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert caught.value.details() == (
                "Expected classification signature method_name to be tensorflow/serving/classify. "
                "Was: tensorflow/serving/predict"
            )
            with pytest.raises(grpc.RpcError) as caught:
                checked.Regress(regress_request(TF2, "regress", XS), timeout=30)
            assert caught.value.details().startswith("Expected regression signature method_name")
    finally:
        server.stop(grace=1)


def test_rest_type_errors_name_tensorflows_dtype(tf_server):
    status, body = post(tf_server, f"/v1/models/{HALF}:predict", {"instances": ["a"]})
    assert status == 400
    assert 'JSON Value: "a" Type: String is not of expected type: float' in body["error"]


def test_get_status_with_a_label_answers_every_version_as_tf_serving(tf_server):
    with urllib.request.urlopen(
        f"http://127.0.0.1:{tf_server.rest_port}/v1/models/{HALF}/labels/anything", timeout=30
    ) as reply:
        body = json.loads(reply.read())
    state = get_model_status_pb2.ModelVersionStatus.State.Name(
        get_model_status_pb2.ModelVersionStatus.AVAILABLE
    )
    assert [(v["version"], v["state"]) for v in body["model_version_status"]] == [("123", state)]
