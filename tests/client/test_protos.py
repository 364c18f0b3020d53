"""rnnserve.serving.protos on its own: the private pool, the exports, the stubs, no TensorFlow.

Runs in the client-only install (numpy, protobuf, grpcio) as well as in the
full one; nothing here needs TensorFlow. Wire compatibility with TF Serving's
own modules is in tests/serving/test_protos_wire.py (full environment).
"""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys
import textwrap
from concurrent import futures

import pytest
from google.protobuf import descriptor_pool, json_format, text_format

from rnnserve.serving import protos

PROTO_DIR = pathlib.Path(protos.__file__).resolve().parent


def _own_files():
    names = []
    for path in sorted(PROTO_DIR.glob("*.proto")):
        names.append(f"rnnserve/serving/protos/{path.name}")
    return names


def test_every_proto_file_is_in_the_pool_under_its_own_path():
    for name in _own_files():
        file = protos.POOL.FindFileByName(name)
        assert file.package in ("tensorflow", "tensorflow.error", "tensorflow.serving", "rnnserve"), name
    # Nothing but our files and the two well-known types they import.
    with pytest.raises(KeyError):
        protos.POOL.FindFileByName("tensorflow/core/framework/tensor.proto")
    protos.POOL.FindFileByName("google/protobuf/any.proto")
    protos.POOL.FindFileByName("google/protobuf/wrappers.proto")


def test_messages_stay_out_of_the_default_pool():
    for name in ("tensorflow.serving.PredictRequest", "tensorflow.TensorProto"):
        assert protos.POOL.FindMessageTypeByName(name).full_name == name
        if "tensorflow" not in sys.modules:  # in the full env TF's own may be there
            with pytest.raises(KeyError):
                descriptor_pool.Default().FindMessageTypeByName(name)


def test_every_top_level_message_and_enum_is_exported():
    exported = {
        value.DESCRIPTOR.full_name
        for value in vars(protos).values()
        if isinstance(value, type) or type(value).__name__ == "EnumTypeWrapper"
    }
    for name in _own_files():
        file = protos.POOL.FindFileByName(name)
        for message in file.message_types_by_name.values():
            assert message.full_name in exported
            assert getattr(protos, message.name).DESCRIPTOR is message
        for enum in file.enum_types_by_name.values():
            assert enum.full_name in exported


def test_dtype_constants_match_the_enum():
    for value in protos.DataType.DESCRIPTOR.values:
        if value.number < 100:
            assert getattr(protos, value.name) == value.number
    assert protos.DT_FLOAT == 1 and protos.DT_STRING == 7 and protos.DT_HALF == 19
    assert protos.DataType.Name(protos.DT_BFLOAT16) == "DT_BFLOAT16"


def test_nested_enums_work_as_in_generated_code():
    assert protos.ModelVersionStatus.State.Name(30) == "AVAILABLE"
    assert protos.ModelVersionStatus.AVAILABLE == 30
    assert protos.Code.Value("NOT_FOUND") == 5
    assert protos.PredictStreamedOptions.END_SPLIT == 2


def test_model_spec_version_oneof_and_wrapper():
    spec = protos.ModelSpec(name="m", signature_name="s")
    spec.version.value = 3
    assert spec.WhichOneof("version_choice") == "version"
    spec.version_label = "stable"
    assert spec.WhichOneof("version_choice") == "version_label"
    assert not spec.HasField("version")
    assert isinstance(protos.ModelSpec(version=protos.Int64Value(value=2)).version, protos.Int64Value)


def _metadata_response():
    signatures = protos.SignatureDefMap()
    signature = signatures.signature_def["serving_default"]
    signature.method_name = "tensorflow/serving/predict"
    tokens = signature.inputs["tokens"]
    tokens.name, tokens.dtype = "serving_default_tokens:0", protos.DT_INT32
    tokens.tensor_shape.dim.add(size=-1)
    signatures.signature_def["classify"].method_name = "tensorflow/serving/classify"
    response = protos.GetModelMetadataResponse()
    response.model_spec.name = "charlm"
    response.model_spec.version.value = 1
    response.metadata["signature_def"].Pack(signatures, deterministic=True)
    return response, signatures


def test_any_packs_and_unpacks_signature_def_map():
    response, signatures = _metadata_response()
    packed = response.metadata["signature_def"]
    assert packed.type_url == "type.googleapis.com/tensorflow.serving.SignatureDefMap"
    assert packed.Is(protos.SignatureDefMap.DESCRIPTOR)
    unpacked = protos.SignatureDefMap()
    assert packed.Unpack(unpacked) and unpacked == signatures
    again = protos.GetModelMetadataResponse.FromString(response.SerializeToString())
    # Bytes, not ==: protobuf's pure-Python backend compares an Any by
    # unpacking it through the default pool, where our types are not.
    assert again.SerializeToString(deterministic=True) == response.SerializeToString(deterministic=True)


def test_json_and_text_format_resolve_any_through_the_pool():
    response, _ = _metadata_response()
    text = json_format.MessageToJson(response, descriptor_pool=protos.POOL)
    doc = json.loads(text)
    assert doc["metadata"]["signature_def"]["@type"].endswith("tensorflow.serving.SignatureDefMap")
    assert doc["modelSpec"]["version"] == "1"  # Int64Value as a wrapper, not a message
    parsed = json_format.Parse(text, protos.GetModelMetadataResponse(), descriptor_pool=protos.POOL)
    assert _unpacked(parsed) == _unpacked(response)  # the Any's bytes may order map entries differently
    as_text = text_format.MessageToString(response, descriptor_pool=protos.POOL)
    assert "[type.googleapis.com/tensorflow.serving.SignatureDefMap]" in as_text
    parsed = text_format.Parse(as_text, protos.GetModelMetadataResponse(), descriptor_pool=protos.POOL)
    assert _unpacked(parsed) == _unpacked(response)


def _unpacked(response):
    signatures = protos.SignatureDefMap()
    assert response.metadata["signature_def"].Unpack(signatures)
    return response.model_spec, signatures


def test_status_json_keeps_tf_serving_field_names():
    response = protos.GetModelStatusResponse()
    response.model_version_status.add(
        version=2,
        state=protos.ModelVersionStatus.END,
        status=protos.StatusProto(error_code=13, error_message="x"),
    )
    doc = json.loads(json_format.MessageToJson(response))
    assert doc == {
        "model_version_status": [
            {"version": "2", "state": "END", "status": {"error_code": "INTERNAL", "error_message": "x"}}
        ]
    }


def test_model_server_config_parses_from_text():
    config = text_format.Parse(
        """
        model_config_list {
          config {
            name: "charlm"
            base_path: "/models/charlm"
            model_platform: "tensorflow"
            model_version_policy { specific { versions: 1 versions: 2 } }
            version_labels { key: "stable" value: 1 }
          }
        }
        """,
        protos.ModelServerConfig(),
    )
    model = config.model_config_list.config[0]
    assert list(model.model_version_policy.specific.versions) == [1, 2]
    assert model.version_labels["stable"] == 1


# --- stubs ------------------------------------------------------------------


def test_stub_paths_and_types_match_the_service_definitions():
    from rnnserve.serving.protos import services

    for service, methods in (
        (services.PREDICTION_SERVICE, services.PREDICTION_SERVICE_METHODS),
        (services.MODEL_SERVICE, services.MODEL_SERVICE_METHODS),
    ):
        descriptor = protos.POOL.FindServiceByName(service)
        assert [method.name for method in descriptor.methods] == list(methods)
        for method in descriptor.methods:
            request_class, response_class = methods[method.name]
            assert request_class.DESCRIPTOR is method.input_type
            assert response_class.DESCRIPTOR is method.output_type
            assert not method.client_streaming and not method.server_streaming


def test_the_generation_stub_is_the_server_streaming_generate_of_generation_proto():
    from rnnserve.serving.protos import services

    descriptor = protos.POOL.FindServiceByName(services.GENERATION_SERVICE)
    assert descriptor.full_name == "rnnserve.GenerationService"
    assert [method.name for method in descriptor.methods] == list(
        services.GENERATION_SERVICE_STREAMING_METHODS
    )
    [method] = descriptor.methods
    request_class, response_class = services.GENERATION_SERVICE_STREAMING_METHODS[method.name]
    assert (request_class.DESCRIPTOR, response_class.DESCRIPTOR) == (method.input_type, method.output_type)
    assert method.server_streaming and not method.client_streaming
    # Its model_spec is TF Serving's ModelSpec, so a spec built for Predict fits as it is.
    assert method.input_type.fields_by_name["model_spec"].message_type is protos.ModelSpec.DESCRIPTOR


def test_the_generation_stub_streams_from_a_server_built_on_the_servicer_base():
    import grpc

    from rnnserve.serving.protos import services

    class Echo(services.GenerationServiceServicer):
        def Generate(self, request, context):
            for character in request.prompt:
                yield protos.GenerateResponse(text=character)
            yield protos.GenerateResponse(done=True, finish_reason="length", model_spec=request.model_spec)

    for servicer, expected in ((Echo(), ["a", "b", ""]), (services.GenerationServiceServicer(), None)):
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        services.add_GenerationServiceServicer_to_server(servicer, server)
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        try:
            with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
                request = protos.GenerateRequest(prompt="ab")
                request.model_spec.name = "m"
                call = services.GenerationServiceStub(channel).Generate(request, timeout=10)
                if expected is None:
                    with pytest.raises(grpc.RpcError) as error:
                        list(call)
                    assert error.value.code() == grpc.StatusCode.UNIMPLEMENTED
                    continue
                responses = list(call)
                assert [response.text for response in responses] == expected
                assert responses[-1].done and responses[-1].model_spec.name == "m"
        finally:
            server.stop(None)


def test_stubs_call_a_server_built_on_the_servicer_bases():
    import grpc

    from rnnserve.serving.protos import services

    class Predictions(services.PredictionServiceServicer):
        def Predict(self, request, context):
            response = protos.PredictResponse()
            response.model_spec.CopyFrom(request.model_spec)
            for alias, tensor in request.inputs.items():
                response.outputs[alias + "_echo"].CopyFrom(tensor)
            return response

    class Models(services.ModelServiceServicer):
        def GetModelStatus(self, request, context):
            return protos.GetModelStatusResponse(
                model_version_status=[
                    protos.ModelVersionStatus(version=1, state=protos.ModelVersionStatus.AVAILABLE)
                ]
            )

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    services.add_PredictionServiceServicer_to_server(Predictions(), server)
    services.add_ModelServiceServicer_to_server(Models(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            predictions = services.PredictionServiceStub(channel)
            request = protos.PredictRequest()
            request.model_spec.name = "m"
            request.inputs["x"].dtype = protos.DT_FLOAT
            request.inputs["x"].float_val.append(1.5)
            response = predictions.Predict(request, timeout=10)
            assert isinstance(response, protos.PredictResponse)
            assert list(response.outputs["x_echo"].float_val) == [1.5]
            assert response.model_spec.name == "m"
            with pytest.raises(grpc.RpcError) as error:
                predictions.Classify(protos.ClassificationRequest(), timeout=10)
            assert error.value.code() == grpc.StatusCode.UNIMPLEMENTED
            models = services.ModelServiceStub(channel)
            status = models.GetModelStatus(protos.GetModelStatusRequest(), timeout=10)
            assert status.model_version_status[0].state == protos.ModelVersionStatus.AVAILABLE
            with pytest.raises(grpc.RpcError) as error:
                models.HandleReloadConfigRequest(protos.ReloadConfigRequest(), timeout=10)
            assert error.value.code() == grpc.StatusCode.UNIMPLEMENTED
    finally:
        server.stop(None)


# --- no TensorFlow ------------------------------------------------------------


def test_importing_the_client_protos_imports_no_tensorflow():
    code = textwrap.dedent(
        """
        import sys
        import rnnserve.serving.protos
        import rnnserve.serving.protos.services
        from rnnserve.serving import tensors
        tensors.to_ndarray(tensors.to_tensor_proto([[1.0, 2.0]]))
        heavy = sorted(name for name in sys.modules
                       if name.split(".")[0] in ("tensorflow", "tensorflow_serving", "keras", "ml_dtypes"))
        print(heavy)
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
