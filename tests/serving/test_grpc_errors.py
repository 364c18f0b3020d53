"""Every gRPC error case: TF Serving's status code and message, from raw stubs.

The expected messages are TF Serving's own (predict_util.cc, server_core.cc,
basic_manager.cc, get_model_status_impl.cc, classifier.cc, ...); the shape
and dtype checks are ours and must name the input.
"""

import grpc
import numpy as np
import pytest
import tensorflow as tf
from conftest import CLS, LM, lm_generate_inputs
from serving_savedmodels import STATE_SIZE, make_example
from tensorflow.core.framework import tensor_pb2, types_pb2
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    inference_pb2,
    model_management_pb2,
    predict_pb2,
    regression_pb2,
)

TIMEOUT = 30
TOKENS = np.array([[1, 2]], np.int32)


def call_error(method, request) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        method(request, timeout=TIMEOUT)
    return caught.value


def predict(signature="serving_default", model=LM, version=None, label=None, **inputs):
    request = predict_pb2.PredictRequest()
    if model is not None:
        request.model_spec.name = model
    request.model_spec.signature_name = signature
    if version is not None:
        request.model_spec.version.value = version
    if label is not None:
        request.model_spec.version_label = label
    for alias, value in inputs.items():
        request.inputs[alias].CopyFrom(
            value if isinstance(value, tensor_pb2.TensorProto) else tf.make_tensor_proto(value)
        )
    return request


CASES = {
    "unknown model": (
        predict(model="nope", tokens=TOKENS),
        "NOT_FOUND",
        "Servable not found for request: Latest(nope)",
    ),
    "unknown version": (
        predict(version=7, tokens=TOKENS),
        "NOT_FOUND",
        "Servable not found for request: Specific(charlm, 7)",
    ),
    "unknown label": (
        predict(label="canary", tokens=TOKENS),
        "INVALID_ARGUMENT",
        "Unrecognized servable version label: canary",
    ),
    "missing model name": (
        predict(model=None, tokens=TOKENS),
        "INVALID_ARGUMENT",
        "ModelSpec has no name specified.",
    ),
    "missing model spec": (predict_pb2.PredictRequest(), "INVALID_ARGUMENT", "Missing ModelSpec"),
    "unknown signature": (
        predict(signature="nope", tokens=TOKENS),
        "FAILED_PRECONDITION",
        'Serving signature key "nope" not found.',
    ),
    "unknown input alias": (
        predict(token=TOKENS),
        "INVALID_ARGUMENT",
        "input tensor alias not found in signature: token. Inputs expected to be in the set {tokens}.",
    ),
    "missing input": (
        predict("step", tokens=TOKENS),
        "INVALID_ARGUMENT",
        "input size does not match signature: 1!=2 len({tokens}) != len({state,tokens}). "
        "Sent extra: {}. Missing but required: {state}.",
    ),
    "extra input": (
        predict(tokens=TOKENS, state=np.zeros((1, STATE_SIZE), np.float32)),
        "INVALID_ARGUMENT",
        "input size does not match signature: 2!=1 len({state,tokens}) != len({tokens}). "
        "Sent extra: {state}. Missing but required: {}.",
    ),
    "wrong dtype": (
        predict(tokens=np.array([[1.0, 2.0]], np.float32)),
        "INVALID_ARGUMENT",
        'Expects input "tokens" to be int32 but float is provided.',
    ),
    # Shapes are the session's business (TF Serving's predict_util.cc checks none):
    # the graph's own ops refuse them, with TensorFlow's INVALID_ARGUMENT.
    "wrong rank, refused by the graph": (
        predict(tokens=np.array([1, 2], np.int32)),
        "INVALID_ARGUMENT",
        "transpose expects a vector of size 1. But input(1) is a vector of size 2",
    ),
    "wrong state width, refused by the graph": (
        predict("step", tokens=TOKENS, state=np.zeros((1, 3), np.float32)),
        "INVALID_ARGUMENT",
        "Number of ways to split should evenly divide the split dimension, but got split_dim 1 (size = 3) "
        "and num_split 2",
    ),
    "wrong dtype, checked before a huge shape is decoded": (
        predict(
            tokens=tensor_pb2.TensorProto(
                dtype=types_pb2.DT_COMPLEX128,
                dcomplex_val=[1.0, 2.0],
                tensor_shape={"dim": [{"size": 2**25}]},
            )
        ),
        "INVALID_ARGUMENT",
        'Expects input "tokens" to be int32 but complex128 is provided.',
    ),
    "tensor larger than max_request_bytes once decoded": (
        predict(
            tokens=tensor_pb2.TensorProto(
                dtype=types_pb2.DT_INT32,
                int_val=[1],
                tensor_shape={"dim": [{"size": 2}, {"size": 2**22 + 1}]},
            )
        ),
        "INVALID_ARGUMENT",
        'Input "tokens" is too large: its int32 tensor of shape [2,4194305] takes 33554440 bytes, '
        "more than the limit of 33554432 (--max_request_bytes).",
    ),
    "malformed tensor proto": (
        predict(
            tokens=tensor_pb2.TensorProto(
                dtype=types_pb2.DT_INT32,
                tensor_content=b"\x01\x02\x03",
                tensor_shape={"dim": [{"size": 1}, {"size": 1}]},
            )
        ),
        "INVALID_ARGUMENT",
        "tensor parsing error: tokens",
    ),
    "signature without a predict method": (
        predict("__saved_model_init_op"),
        "INTERNAL",
        "Expected prediction signature method_name to be one of {tensorflow/serving/predict, "
        "tensorflow/serving/classify, tensorflow/serving/regress}. Was: ",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_predict_errors_have_tf_servings_code_and_message(prediction_stub, case):
    request, code, message = CASES[case]
    error = call_error(prediction_stub.Predict, request)
    assert error.code().name == code
    assert error.details() == message


def test_unknown_output_filter_alias(prediction_stub):
    request = predict(tokens=TOKENS)
    request.output_filter.append("probs")
    error = call_error(prediction_stub.Predict, request)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (
        error.details()
        == "output tensor alias not found in signature: probs Outputs expected to be in the set {logits}."
    )


def test_duplicate_output_filter_alias(prediction_stub):
    request = predict(tokens=TOKENS)
    request.output_filter.extend(["logits", "logits"])
    error = call_error(prediction_stub.Predict, request)
    assert (error.code(), error.details()) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "duplicate output tensor alias: logits",
    )


def test_graph_assertions_come_back_as_invalid_argument_naming_the_input(prediction_stub):
    inputs = lm_generate_inputs(TOKENS, max_new_tokens=0)
    error = call_error(prediction_stub.Predict, predict("generate", **inputs))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "max_new_tokens must be in [1, 64]" in error.details()


def test_messages_are_truncated_at_1024_characters_like_tf_serving(prediction_stub):
    long_name = "x" * 2000
    error = call_error(prediction_stub.Predict, predict(model=long_name, tokens=TOKENS))
    assert error.details().endswith("...TRUNCATED") and len(error.details()) == 1024 + len("...TRUNCATED")


def test_status_errors(model_stub):
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = "nope"
    error = call_error(model_stub.GetModelStatus, request)
    assert (error.code(), error.details()) == (
        grpc.StatusCode.NOT_FOUND,
        "Could not find any versions of model nope",
    )
    request.model_spec.name, request.model_spec.version.value = LM, 9
    error = call_error(model_stub.GetModelStatus, request)
    assert (error.code(), error.details()) == (
        grpc.StatusCode.NOT_FOUND,
        "Could not find version 9 of model charlm",
    )
    error = call_error(model_stub.GetModelStatus, get_model_status_pb2.GetModelStatusRequest())
    assert (error.code(), error.details()) == (grpc.StatusCode.INVALID_ARGUMENT, "Missing ModelSpec")


def test_metadata_errors(prediction_stub):
    request = get_model_metadata_pb2.GetModelMetadataRequest()
    request.model_spec.name = LM
    error = call_error(prediction_stub.GetModelMetadata, request)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details() == "GetModelMetadataRequest must specify at least one metadata_field"
    request.metadata_field.append("graph_def")
    error = call_error(prediction_stub.GetModelMetadata, request)
    assert (error.code(), error.details()) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "Metadata field graph_def is not supported",
    )


def _examples(request):
    request.input.example_list.examples.add().ParseFromString(make_example(1.0, 2.0))


def test_classify_on_a_predict_signature_without_an_inputs_tensor_is_tf_servings_error(prediction_stub):
    request = classification_pb2.ClassificationRequest()
    request.model_spec.name, request.model_spec.signature_name = CLS, "predict_x"
    _examples(request)
    error = call_error(prediction_stub.Classify, request)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details().startswith('No classification inputs found in SignatureDef: inputs {\n  key: "x"')


def test_regress_on_the_language_model_is_tf_servings_error(prediction_stub):
    request = regression_pb2.RegressionRequest()
    request.model_spec.name = LM
    _examples(request)
    error = call_error(prediction_stub.Regress, request)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details().startswith("No regression inputs found in SignatureDef: inputs {")


def test_classify_with_no_examples_and_unknown_signature(prediction_stub):
    request = classification_pb2.ClassificationRequest()
    request.model_spec.name = CLS
    error = call_error(prediction_stub.Classify, request)
    assert (error.code(), error.details()) == (grpc.StatusCode.INVALID_ARGUMENT, "Input is empty.")
    request.model_spec.signature_name = "nope"
    _examples(request)
    error = call_error(prediction_stub.Classify, request)
    assert (error.code(), error.details()) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "No signature was found with the name: nope",
    )


def test_multi_inference_errors(prediction_stub):
    request = inference_pb2.MultiInferenceRequest()
    for _ in range(2):
        task = request.tasks.add(method_name="tensorflow/serving/classify")
        task.model_spec.name, task.model_spec.signature_name = CLS, "classify_x"
    _examples(request)
    error = call_error(prediction_stub.MultiInference, request)
    assert (error.code(), error.details()) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "Duplicate evaluation of signature: classify_x",
    )
    request.tasks[1].model_spec.signature_name = "regress_x"
    request.tasks[1].method_name = "tensorflow/serving/predict"
    error = call_error(prediction_stub.MultiInference, request)
    assert (error.code(), error.details()) == (
        grpc.StatusCode.UNIMPLEMENTED,
        "Unsupported signature method_name: tensorflow/serving/predict",
    )


def test_reload_with_an_invalid_config_is_invalid_argument_and_changes_nothing(model_stub, prediction_stub):
    request = model_management_pb2.ReloadConfigRequest()
    for _ in range(2):
        entry = request.config.model_config_list.config.add()
        entry.name, entry.base_path, entry.model_platform = "twice", "/nonexistent", "tensorflow"
    error = call_error(model_stub.HandleReloadConfigRequest, request)
    assert (error.code(), error.details()) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "Illegal to list model twice multiple times in config list",
    )
    prediction_stub.Predict(predict(tokens=TOKENS), timeout=TIMEOUT)  # still serving
