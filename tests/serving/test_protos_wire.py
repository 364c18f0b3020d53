"""Wire compatibility of rnnserve.serving.protos with TF Serving's own generated modules.

Runs in the full environment (tensorflow-serving-api, hence TensorFlow). For
a set of requests and responses (every dtype, scalars and empty tensors,
strings, metadata with several signatures, status with errors, ...), built
field by field once with our classes and once with `tensorflow_serving.apis`,
bytes from either side parse on the other into an equal message, and the
deterministic bytes are identical. The descriptors themselves are compared in
test_protos_descriptors.py.
"""

from __future__ import annotations

import types

import pytest
from google.protobuf import any_pb2, wrappers_pb2
from tensorflow.core.example import example_pb2, feature_pb2
from tensorflow.core.framework import (
    resource_handle_pb2,
    tensor_pb2,
    tensor_shape_pb2,
    types_pb2,
)
from tensorflow.core.protobuf import meta_graph_pb2, struct_pb2
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    inference_pb2,
    input_pb2,
    model_management_pb2,
    model_pb2,
    predict_pb2,
    regression_pb2,
    status_pb2,
)
from tensorflow_serving.config import (
    file_system_storage_path_source_pb2,
    log_collector_config_pb2,
    logging_config_pb2,
    model_server_config_pb2,
)

from rnnserve.serving import protos

# The same names, bound to TF Serving's generated classes.
TF = types.SimpleNamespace(
    Any=any_pb2.Any,
    Int64Value=wrappers_pb2.Int64Value,
    DataType=types_pb2.DataType,
    TensorShapeProto=tensor_shape_pb2.TensorShapeProto,
    ResourceHandleProto=resource_handle_pb2.ResourceHandleProto,
    TensorProto=tensor_pb2.TensorProto,
    VariantTensorDataProto=tensor_pb2.VariantTensorDataProto,
    TensorInfo=meta_graph_pb2.TensorInfo,
    SignatureDef=meta_graph_pb2.SignatureDef,
    StructuredValue=struct_pb2.StructuredValue,
    TypeSpecProto=struct_pb2.TypeSpecProto,
    Feature=feature_pb2.Feature,
    Features=feature_pb2.Features,
    Example=example_pb2.Example,
    ModelSpec=model_pb2.ModelSpec,
    PredictRequest=predict_pb2.PredictRequest,
    PredictStreamedOptions=predict_pb2.PredictStreamedOptions,
    PredictResponse=predict_pb2.PredictResponse,
    SignatureDefMap=get_model_metadata_pb2.SignatureDefMap,
    GetModelMetadataRequest=get_model_metadata_pb2.GetModelMetadataRequest,
    GetModelMetadataResponse=get_model_metadata_pb2.GetModelMetadataResponse,
    StatusProto=status_pb2.StatusProto,
    GetModelStatusRequest=get_model_status_pb2.GetModelStatusRequest,
    ModelVersionStatus=get_model_status_pb2.ModelVersionStatus,
    GetModelStatusResponse=get_model_status_pb2.GetModelStatusResponse,
    Input=input_pb2.Input,
    ClassificationRequest=classification_pb2.ClassificationRequest,
    ClassificationResponse=classification_pb2.ClassificationResponse,
    RegressionRequest=regression_pb2.RegressionRequest,
    RegressionResponse=regression_pb2.RegressionResponse,
    MultiInferenceRequest=inference_pb2.MultiInferenceRequest,
    MultiInferenceResponse=inference_pb2.MultiInferenceResponse,
    FileSystemStoragePathSourceConfig=file_system_storage_path_source_pb2.FileSystemStoragePathSourceConfig,
    LogCollectorConfig=log_collector_config_pb2.LogCollectorConfig,
    LoggingConfig=logging_config_pb2.LoggingConfig,
    ModelServerConfig=model_server_config_pb2.ModelServerConfig,
    ReloadConfigRequest=model_management_pb2.ReloadConfigRequest,
    ReloadConfigResponse=model_management_pb2.ReloadConfigResponse,
)


# --- messages -----------------------------------------------------------------


def _tensor(ns, dtype, shape, **fields):
    tensor = ns.TensorProto(dtype=dtype, **fields)
    tensor.tensor_shape.SetInParent()
    for size in shape:
        tensor.tensor_shape.dim.add(size=size)
    return tensor


def _all_dtype_tensors(ns):
    """name -> TensorProto: every dtype, typed fields and tensor_content, scalars, empty, strings."""
    return {
        "float_scalar": _tensor(ns, 1, [], float_val=[1.5]),
        "float_content": _tensor(ns, 1, [2, 2], tensor_content=b"\x00\x00\x80\x3f" * 4),
        "double": _tensor(ns, 2, [2], double_val=[-1e300, 2.5]),
        "int32": _tensor(ns, 3, [3], int_val=[-(2**31), 0, 2**31 - 1]),
        "uint8": _tensor(ns, 4, [2], int_val=[0, 255]),
        "int16": _tensor(ns, 5, [1], int_val=[-32768]),
        "int8": _tensor(ns, 6, [2], int_val=[-128, 127]),
        "string": _tensor(ns, 7, [2, 2], string_val=[b"", b"h\xc3\xa9llo", b"\x00\xff", b"x" * 300]),
        "string_scalar": _tensor(ns, 7, [], string_val=[b"one"]),
        "complex64": _tensor(ns, 8, [2], scomplex_val=[1, 2, 3, -4]),
        "int64": _tensor(ns, 9, [2], int64_val=[-(2**63), 2**63 - 1]),
        "bool": _tensor(ns, 10, [3], bool_val=[True, False, True]),
        "bfloat16": _tensor(ns, 14, [2], half_val=[0x3F80, 0xC000]),
        "uint16": _tensor(ns, 17, [1], int_val=[65535]),
        "complex128": _tensor(ns, 18, [1], dcomplex_val=[1e-300, -2.0]),
        "half": _tensor(ns, 19, [2], half_val=[0x3C00, 0x7C00]),
        "uint32": _tensor(ns, 22, [1], uint32_val=[2**32 - 1]),
        "uint64": _tensor(ns, 23, [1], uint64_val=[2**64 - 1]),
        "float8": _tensor(ns, 24, [3], float8_val=b"\x01\x02\x03"),
        "int4": _tensor(ns, 29, [2], int_val=[-8, 7]),
        "empty": _tensor(ns, 1, [0, 3]),
        "unknown_rank": ns.TensorProto(dtype=1, tensor_shape=ns.TensorShapeProto(unknown_rank=True)),
        "named_dims": ns.TensorProto(
            dtype=3, tensor_shape=ns.TensorShapeProto(dim=[ns.TensorShapeProto.Dim(size=2, name="batch")]),
            int_val=[1, 2], version_number=1,
        ),
        "resource": ns.TensorProto(
            dtype=20,
            resource_handle_val=[
                ns.ResourceHandleProto(
                    device="/cpu:0", container="c", name="v", hash_code=2**64 - 1, maybe_type_name="T",
                    dtypes_and_shapes=[ns.ResourceHandleProto.DtypeAndShape(dtype=1)],
                )
            ],
        ),
        "variant": ns.TensorProto(
            dtype=21,
            variant_val=[ns.VariantTensorDataProto(type_name="t", metadata=b"m", tensors=[_tensor(ns, 1, [], float_val=[1])])],
        ),
    }  # fmt: skip


def predict_request(ns):
    request = ns.PredictRequest()
    request.model_spec.name = "charlm"
    request.model_spec.signature_name = "generate"
    request.model_spec.version.value = 7
    for alias, tensor in _all_dtype_tensors(ns).items():
        request.inputs[alias].CopyFrom(tensor)
    request.output_filter.extend(["logits", "state"])
    request.client_id = b"client-1"
    request.predict_streamed_options.request_state = ns.PredictStreamedOptions.END_SPLIT
    request.predict_streamed_options.split_dimensions["tokens"] = 1
    request.predict_streamed_options.return_single_response = True
    options = request.request_options
    options.client_id = b""  # optional: present although empty
    options.deterministic_mode = 1
    options.return_stoptokens.extend([0, 2])
    options.max_cache_length = 128
    options.handshake.estimated_payload_bytes = 1 << 20
    return request


def predict_request_by_label(ns):
    request = ns.PredictRequest()
    request.model_spec.name = "charlm"
    request.model_spec.version_label = "stable"
    request.inputs["tokens"].CopyFrom(_tensor(ns, 3, [1, 3], tensor_content=b"\x01\x00\x00\x00" * 3))
    return request


def predict_response(ns):
    response = ns.PredictResponse()
    response.model_spec.name = "charlm"
    response.model_spec.version.value = 1
    response.model_spec.signature_name = "serving_default"
    response.outputs["logits"].CopyFrom(_tensor(ns, 1, [1, 2, 3], float_val=[0.5] * 6))
    response.outputs["text"].CopyFrom(_tensor(ns, 7, [], string_val=[b"hi"]))
    response.outputs["nothing"].CopyFrom(_tensor(ns, 9, [0]))
    return response


def _signature_map(ns):
    signatures = ns.SignatureDefMap()
    predict = signatures.signature_def["serving_default"]
    predict.method_name = "tensorflow/serving/predict"
    tokens = predict.inputs["tokens"]
    tokens.name, tokens.dtype = "serving_default_tokens:0", 3
    tokens.tensor_shape.dim.add(size=-1)
    tokens.tensor_shape.dim.add(size=-1)
    predict.outputs["logits"].name = "StatefulPartitionedCall:0"
    predict.outputs["logits"].dtype = 1
    predict.outputs["logits"].tensor_shape.unknown_rank = True
    predict.defaults["temperature"].CopyFrom(_tensor(ns, 1, [], float_val=[1.0]))
    sparse = predict.inputs["sparse"]
    sparse.dtype = 9
    sparse.coo_sparse.values_tensor_name = "v:0"
    sparse.coo_sparse.indices_tensor_name = "i:0"
    sparse.coo_sparse.dense_shape_tensor_name = "s:0"
    ragged = predict.inputs["ragged"]
    ragged.dtype = 1
    ragged.composite_tensor.type_spec.type_spec_class = ns.TypeSpecProto.RAGGED_TENSOR_SPEC
    ragged.composite_tensor.type_spec.type_spec_class_name = "RaggedTensorSpec"
    ragged.composite_tensor.type_spec.num_flat_components = 2
    state = ragged.composite_tensor.type_spec.type_state
    state.tuple_value.values.add().tensor_shape_value.dim.add(size=-1)
    state.tuple_value.values.add().tensor_dtype_value = 1
    state.tuple_value.values.add().int64_value = -1
    state.tuple_value.values.add().dict_value.fields["k"].string_value = "v"
    state.tuple_value.values.add().none_value.SetInParent()
    component = ragged.composite_tensor.components.add()
    component.name, component.dtype = "values:0", 1
    classify = signatures.signature_def["classify"]
    classify.method_name = "tensorflow/serving/classify"
    classify.inputs["inputs"].name = "input_example_tensor:0"
    classify.inputs["inputs"].dtype = 7
    classify.outputs["classes"].dtype = 7
    classify.outputs["scores"].dtype = 1
    signatures.signature_def["regress"].method_name = "tensorflow/serving/regress"
    signatures.signature_def["regress"].outputs["outputs"].dtype = 1
    return signatures


def metadata_request(ns):
    request = ns.GetModelMetadataRequest(metadata_field=["signature_def"])
    request.model_spec.name = "charlm"
    request.model_spec.version.value = 2
    return request


def metadata_response(ns):
    response = ns.GetModelMetadataResponse()
    response.model_spec.name = "charlm"
    response.model_spec.version.value = 2
    response.metadata["signature_def"].Pack(_signature_map(ns), deterministic=True)
    return response


def status_request(ns):
    request = ns.GetModelStatusRequest()
    request.model_spec.name = "charlm"
    request.model_spec.version_label = "canary"
    return request


def status_response(ns):
    response = ns.GetModelStatusResponse()
    response.model_version_status.add(version=3, state=ns.ModelVersionStatus.AVAILABLE).status.SetInParent()
    response.model_version_status.add(
        version=2, state=ns.ModelVersionStatus.END,
        status=ns.StatusProto(error_code=13, error_message="Failed to load: NOT_FOUND: saved_model.pb"),
    )  # fmt: skip
    response.model_version_status.add(version=1, state=ns.ModelVersionStatus.LOADING)
    response.model_version_status.add(
        version=0, state=ns.ModelVersionStatus.UNKNOWN, status=ns.StatusProto(error_code=5, error_message="x")
    )
    return response


def _examples(ns, message):
    example = message.examples.add()
    example.features.feature["words"].bytes_list.value.extend([b"a", b"\xff"])
    example.features.feature["weights"].float_list.value.extend([0.5, -1.0])
    example.features.feature["ids"].int64_list.value.extend([1, -(2**63)])
    message.examples.add()  # an empty Example
    return message


def classify_request(ns):
    request = ns.ClassificationRequest()
    request.model_spec.name = "clf"
    request.model_spec.signature_name = "classify"
    _examples(ns, request.input.example_list)
    return request


def classify_request_with_context(ns):
    request = ns.ClassificationRequest()
    request.model_spec.name = "clf"
    _examples(ns, request.input.example_list_with_context)
    request.input.example_list_with_context.context.features.feature["user"].int64_list.value.append(9)
    return request


def classify_response(ns):
    response = ns.ClassificationResponse()
    response.model_spec.name = "clf"
    response.model_spec.version.value = 1
    first = response.result.classifications.add()
    first.classes.add(label="cat", score=0.75)
    first.classes.add(label="dog", score=0.25)
    response.result.classifications.add().classes.add(score=1.0)
    return response


def regress_request(ns):
    request = ns.RegressionRequest()
    request.model_spec.name = "reg"
    _examples(ns, request.input.example_list)
    return request


def regress_response(ns):
    response = ns.RegressionResponse()
    response.model_spec.name = "reg"
    response.result.regressions.add(value=1.25)
    response.result.regressions.add(value=-3.0)
    return response


def multi_inference_request(ns):
    request = ns.MultiInferenceRequest()
    for signature, method in (
        ("classify", "tensorflow/serving/classify"),
        ("regress", "tensorflow/serving/regress"),
    ):
        task = request.tasks.add(method_name=method)
        task.model_spec.name = "multi"
        task.model_spec.signature_name = signature
    _examples(ns, request.input.example_list)
    return request


def multi_inference_response(ns):
    response = ns.MultiInferenceResponse()
    first = response.results.add()
    first.model_spec.name = "multi"
    first.classification_result.classifications.add().classes.add(label="a", score=0.5)
    second = response.results.add()
    second.model_spec.name = "multi"
    second.regression_result.regressions.add(value=2.0)
    return response


def reload_request(ns):
    request = ns.ReloadConfigRequest(metric_names=["/tensorflow/serving/model_warmup_latency"])
    models = request.config.model_config_list
    first = models.config.add(name="charlm", base_path="/models/charlm", model_platform="tensorflow")
    first.model_version_policy.specific.versions.extend([1, 2])
    first.version_labels["stable"] = 1
    first.version_labels["canary"] = 2
    first.logging_config.log_collector_config.type = "file"
    first.logging_config.log_collector_config.filename_prefix = "/tmp/log"
    first.logging_config.sampling_config.sampling_rate = 0.25
    first.logging_config.sampling_config.attributes = 3
    sampling = first.logging_config.sampling_config.per_task_sampling_configs.add(dc="xx", sampling_rate=1.0)
    sampling.task_index = 0  # optional: present although zero
    second = models.config.add(name="wordlm", base_path="/models/wordlm", model_type=1)
    second.model_version_policy.latest.num_versions = 2
    models.config.add(name="all").model_version_policy.all.SetInParent()
    return request


def reload_request_custom(ns):
    request = ns.ReloadConfigRequest()
    request.config.custom_model_config.Pack(ns.LogCollectorConfig(type="custom"), deterministic=True)
    return request


def reload_response(ns):
    response = ns.ReloadConfigResponse(status=ns.StatusProto(error_code=3, error_message="bad config"))
    response.metric.add(name="m", int64_value_increase=5)
    return response


CASES = [
    ("PredictRequest", predict_request),
    ("PredictRequest", predict_request_by_label),
    ("PredictResponse", predict_response),
    ("GetModelMetadataRequest", metadata_request),
    ("GetModelMetadataResponse", metadata_response),
    ("GetModelStatusRequest", status_request),
    ("GetModelStatusResponse", status_response),
    ("ClassificationRequest", classify_request),
    ("ClassificationRequest", classify_request_with_context),
    ("ClassificationResponse", classify_response),
    ("RegressionRequest", regress_request),
    ("RegressionResponse", regress_response),
    ("MultiInferenceRequest", multi_inference_request),
    ("MultiInferenceResponse", multi_inference_response),
    ("ReloadConfigRequest", reload_request),
    ("ReloadConfigRequest", reload_request_custom),
    ("ReloadConfigResponse", reload_response),
]


@pytest.mark.parametrize("name, build", CASES, ids=[build.__name__ for _, build in CASES])
def test_messages_cross_the_wire_both_ways(name, build):
    ours, theirs = build(protos), build(TF)
    our_class, tf_class = getattr(protos, name), getattr(TF, name)
    assert isinstance(ours, our_class) and isinstance(theirs, tf_class)
    assert ours.ListFields()  # the builders really set something
    # Ours -> TF Serving's parser, and TF Serving's -> ours.
    assert tf_class.FromString(ours.SerializeToString()) == theirs
    assert our_class.FromString(theirs.SerializeToString()) == ours
    # Same bytes (deterministic: map entries sorted by key).
    assert ours.SerializeToString(deterministic=True) == theirs.SerializeToString(deterministic=True)
    # Nothing was carried as an unknown field on either side.
    parsed = our_class.FromString(theirs.SerializeToString())
    assert parsed.SerializeToString(deterministic=True) == theirs.SerializeToString(deterministic=True)


def test_signature_def_any_unpacks_across_the_two_pools():
    ours, theirs = metadata_response(protos), metadata_response(TF)
    # TF Serving's response, read with our classes (what the light client does).
    received = protos.GetModelMetadataResponse.FromString(theirs.SerializeToString())
    signatures = protos.SignatureDefMap()
    assert received.metadata["signature_def"].Unpack(signatures)
    assert signatures == _signature_map(protos)
    assert set(signatures.signature_def) == {"serving_default", "classify", "regress"}
    # Our response, read by TF Serving's classes, and an Any of one pool
    # unpacked into a message of the other.
    tf_signatures = TF.SignatureDefMap()
    assert (
        TF.GetModelMetadataResponse.FromString(ours.SerializeToString())
        .metadata["signature_def"]
        .Unpack(tf_signatures)
    )
    assert tf_signatures == _signature_map(TF)
    assert theirs.metadata["signature_def"].Unpack(protos.SignatureDefMap())
    assert ours.metadata["signature_def"].Unpack(TF.SignatureDefMap())


def test_classes_of_the_two_pools_do_not_mix_directly():
    # The documented limitation: convert through bytes instead.
    request = protos.PredictRequest()
    with pytest.raises(TypeError):
        request.inputs["x"].CopyFrom(TF.TensorProto(dtype=1))
    request.inputs["x"].ParseFromString(TF.TensorProto(dtype=1).SerializeToString())
    assert request.inputs["x"].dtype == protos.DT_FLOAT
