"""TF Serving's API messages without TensorFlow, in a private descriptor pool.

The `.proto` files beside this module are the project's own copies of the
TensorFlow Serving API (PredictionService, ModelService) and of the TensorFlow
messages it carries (TensorProto, SignatureDef, tf.Example, ...): the same
package names, message names, field numbers and types as the originals, so the
bytes on the wire are the same. `generation.proto` (package `rnnserve`) is the
embedded server's own streaming service, `rnnserve.GenerationService`. They are compiled once into
`descriptors.binpb` (a FileDescriptorSet; `python serving/protos/regenerate.py`
rebuilds it) and loaded here into `POOL`, a `DescriptorPool` of their own:

* No TensorFlow, no `tensorflow-serving-api`: only `protobuf` is imported.
* No clash with TensorFlow's generated modules: those register
  `tensorflow.TensorProto`, `tensorflow.serving.PredictRequest`, ... in
  protobuf's default pool, and the same names there would fail with
  "duplicate symbol". In `POOL` they coexist, in one process, with TF's.
* No generated `_pb2.py` code, so nothing tied to the protobuf version that
  generated it: any protobuf runtime from 4.25 on loads the same file.

Use the classes like generated ones::

    from rnnserve.serving import protos

    request = protos.PredictRequest()
    request.model_spec.name = "charlm"
    tensors.to_tensor_proto(tokens, out=request.inputs["tokens"])   # rnnserve.serving.tensors
    response = protos.PredictResponse.FromString(wire_bytes)

Things to know, all consequences of the private pool:

* Our classes are not TensorFlow's: `CopyFrom`, `MergeFrom` and assigning a
  submessage across the two raise TypeError. Convert through bytes:
  `protos.TensorProto.FromString(tf_proto.SerializeToString())`.
  `rnnserve.serving.tensors` reads and fills either kind.
* `google.protobuf.Any` and `Int64Value` inside these messages are this
  pool's copies (`protos.Any`, `protos.Int64Value`); `Pack`, `Unpack` and
  `Is` work as usual, with messages of either pool.
* `json_format` and `text_format` resolve the type inside an `Any` through a
  pool: pass `descriptor_pool=protos.POOL`.
* Only with protobuf's pure-Python backend (PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION
  =python; the default upb backend is unaffected): `==` between two messages
  holding an `Any` looks the packed type up in the default pool and raises
  KeyError. Compare `SerializeToString(deterministic=True)` instead.
"""

from __future__ import annotations

import pkgutil

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.internal import enum_type_wrapper

DESCRIPTOR_SET = "descriptors.binpb"
"""The FileDescriptorSet compiled from this directory's `.proto` files."""

POOL = descriptor_pool.DescriptorPool()
"""The private pool holding every descriptor below (and nothing else)."""


def _load() -> None:
    data = pkgutil.get_data(__name__, DESCRIPTOR_SET)
    if data is None:  # pragma: no cover - a loader that cannot read package data
        raise ImportError(f"{__name__}: cannot read {DESCRIPTOR_SET}")
    # protoc --include_imports writes the files in dependency order.
    for file_proto in descriptor_pb2.FileDescriptorSet.FromString(data).file:
        POOL.AddSerializedFile(file_proto.SerializeToString())


_load()


def message_class(full_name: str):
    """The message class of `full_name` ("tensorflow.serving.PredictRequest") in POOL."""
    return message_factory.GetMessageClass(POOL.FindMessageTypeByName(full_name))


def _enum(full_name: str) -> enum_type_wrapper.EnumTypeWrapper:
    return enum_type_wrapper.EnumTypeWrapper(POOL.FindEnumTypeByName(full_name))


# Well-known types used inside the messages (this pool's copies).
Any = message_class("google.protobuf.Any")
Int64Value = message_class("google.protobuf.Int64Value")

# tensorflow: tensors, shapes, dtypes.
DataType = _enum("tensorflow.DataType")
SerializedDType = message_class("tensorflow.SerializedDType")
TensorShapeProto = message_class("tensorflow.TensorShapeProto")
ResourceHandleProto = message_class("tensorflow.ResourceHandleProto")
TensorProto = message_class("tensorflow.TensorProto")
VariantTensorDataProto = message_class("tensorflow.VariantTensorDataProto")

# tensorflow: signatures (and the type specs of composite tensors in them).
TensorInfo = message_class("tensorflow.TensorInfo")
SignatureDef = message_class("tensorflow.SignatureDef")
StructuredValue = message_class("tensorflow.StructuredValue")
NoneValue = message_class("tensorflow.NoneValue")
ListValue = message_class("tensorflow.ListValue")
TupleValue = message_class("tensorflow.TupleValue")
DictValue = message_class("tensorflow.DictValue")
PairValue = message_class("tensorflow.PairValue")
NamedTupleValue = message_class("tensorflow.NamedTupleValue")
TensorSpecProto = message_class("tensorflow.TensorSpecProto")
BoundedTensorSpecProto = message_class("tensorflow.BoundedTensorSpecProto")
TypeSpecProto = message_class("tensorflow.TypeSpecProto")

# tensorflow: tf.Example.
BytesList = message_class("tensorflow.BytesList")
FloatList = message_class("tensorflow.FloatList")
Int64List = message_class("tensorflow.Int64List")
Feature = message_class("tensorflow.Feature")
Features = message_class("tensorflow.Features")
FeatureList = message_class("tensorflow.FeatureList")
FeatureLists = message_class("tensorflow.FeatureLists")
Example = message_class("tensorflow.Example")
SequenceExample = message_class("tensorflow.SequenceExample")

# tensorflow.error: the canonical error codes (StatusProto.error_code).
Code = _enum("tensorflow.error.Code")

# tensorflow.serving: Predict and GetModelMetadata.
ModelSpec = message_class("tensorflow.serving.ModelSpec")
PredictRequest = message_class("tensorflow.serving.PredictRequest")
PredictStreamedOptions = message_class("tensorflow.serving.PredictStreamedOptions")
PredictResponse = message_class("tensorflow.serving.PredictResponse")
SignatureDefMap = message_class("tensorflow.serving.SignatureDefMap")
GetModelMetadataRequest = message_class("tensorflow.serving.GetModelMetadataRequest")
GetModelMetadataResponse = message_class("tensorflow.serving.GetModelMetadataResponse")

# tensorflow.serving: GetModelStatus.
StatusProto = message_class("tensorflow.serving.StatusProto")
GetModelStatusRequest = message_class("tensorflow.serving.GetModelStatusRequest")
ModelVersionStatus = message_class("tensorflow.serving.ModelVersionStatus")
GetModelStatusResponse = message_class("tensorflow.serving.GetModelStatusResponse")

# tensorflow.serving: Classify, Regress, MultiInference.
ExampleList = message_class("tensorflow.serving.ExampleList")
ExampleListWithContext = message_class("tensorflow.serving.ExampleListWithContext")
Input = message_class("tensorflow.serving.Input")
Class = message_class("tensorflow.serving.Class")
Classifications = message_class("tensorflow.serving.Classifications")
ClassificationResult = message_class("tensorflow.serving.ClassificationResult")
ClassificationRequest = message_class("tensorflow.serving.ClassificationRequest")
ClassificationResponse = message_class("tensorflow.serving.ClassificationResponse")
Regression = message_class("tensorflow.serving.Regression")
RegressionResult = message_class("tensorflow.serving.RegressionResult")
RegressionRequest = message_class("tensorflow.serving.RegressionRequest")
RegressionResponse = message_class("tensorflow.serving.RegressionResponse")
InferenceTask = message_class("tensorflow.serving.InferenceTask")
InferenceResult = message_class("tensorflow.serving.InferenceResult")
MultiInferenceRequest = message_class("tensorflow.serving.MultiInferenceRequest")
MultiInferenceResponse = message_class("tensorflow.serving.MultiInferenceResponse")

# tensorflow.serving: HandleReloadConfigRequest and the ModelServerConfig it carries.
FileSystemStoragePathSourceConfig = message_class("tensorflow.serving.FileSystemStoragePathSourceConfig")
LogCollectorConfig = message_class("tensorflow.serving.LogCollectorConfig")
PerTaskSamplingConfig = message_class("tensorflow.serving.PerTaskSamplingConfig")
SamplingConfig = message_class("tensorflow.serving.SamplingConfig")
LoggingConfig = message_class("tensorflow.serving.LoggingConfig")
ModelType = _enum("tensorflow.serving.ModelType")
ModelConfig = message_class("tensorflow.serving.ModelConfig")
ModelConfigList = message_class("tensorflow.serving.ModelConfigList")
ModelServerConfig = message_class("tensorflow.serving.ModelServerConfig")
ReloadConfigRequest = message_class("tensorflow.serving.ReloadConfigRequest")
ReloadConfigResponse = message_class("tensorflow.serving.ReloadConfigResponse")
Metric = message_class("tensorflow.serving.Metric")

# rnnserve: the streaming generation service (generation.proto; ours, not TF Serving's).
GenerateRequest = message_class("rnnserve.GenerateRequest")
GenerateResponse = message_class("rnnserve.GenerateResponse")

# DT_FLOAT, DT_INT32, ... as module constants, like TensorFlow's types_pb2.
DT_INVALID = DataType.Value("DT_INVALID")
DT_FLOAT = DataType.Value("DT_FLOAT")
DT_DOUBLE = DataType.Value("DT_DOUBLE")
DT_INT32 = DataType.Value("DT_INT32")
DT_UINT8 = DataType.Value("DT_UINT8")
DT_INT16 = DataType.Value("DT_INT16")
DT_INT8 = DataType.Value("DT_INT8")
DT_STRING = DataType.Value("DT_STRING")
DT_COMPLEX64 = DataType.Value("DT_COMPLEX64")
DT_INT64 = DataType.Value("DT_INT64")
DT_BOOL = DataType.Value("DT_BOOL")
DT_QINT8 = DataType.Value("DT_QINT8")
DT_QUINT8 = DataType.Value("DT_QUINT8")
DT_QINT32 = DataType.Value("DT_QINT32")
DT_BFLOAT16 = DataType.Value("DT_BFLOAT16")
DT_QINT16 = DataType.Value("DT_QINT16")
DT_QUINT16 = DataType.Value("DT_QUINT16")
DT_UINT16 = DataType.Value("DT_UINT16")
DT_COMPLEX128 = DataType.Value("DT_COMPLEX128")
DT_HALF = DataType.Value("DT_HALF")
DT_RESOURCE = DataType.Value("DT_RESOURCE")
DT_VARIANT = DataType.Value("DT_VARIANT")
DT_UINT32 = DataType.Value("DT_UINT32")
DT_UINT64 = DataType.Value("DT_UINT64")
DT_FLOAT8_E5M2 = DataType.Value("DT_FLOAT8_E5M2")
DT_FLOAT8_E4M3FN = DataType.Value("DT_FLOAT8_E4M3FN")
DT_FLOAT8_E4M3FNUZ = DataType.Value("DT_FLOAT8_E4M3FNUZ")
DT_FLOAT8_E4M3B11FNUZ = DataType.Value("DT_FLOAT8_E4M3B11FNUZ")
DT_FLOAT8_E5M2FNUZ = DataType.Value("DT_FLOAT8_E5M2FNUZ")
DT_INT4 = DataType.Value("DT_INT4")
DT_UINT4 = DataType.Value("DT_UINT4")
DT_INT2 = DataType.Value("DT_INT2")
DT_UINT2 = DataType.Value("DT_UINT2")
DT_FLOAT4_E2M1FN = DataType.Value("DT_FLOAT4_E2M1FN")
