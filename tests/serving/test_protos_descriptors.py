"""The descriptors of rnnserve.serving.protos against TF Serving's own, field for field.

Runs in the full environment (tensorflow-serving-api, hence TensorFlow):

* every message, enum and service we define has the same fields (number,
  name, type, label, JSON name, oneof, presence) as TensorFlow's and TF
  Serving's generated modules;
* both sets of classes load in one process, in either order;
* the committed descriptor set is what the `.proto` files compile to
  (`regenerate.py --check`, the CI check that it is current).
"""

from __future__ import annotations

import pathlib
import subprocess
import sys
import textwrap

import pytest
from google.protobuf import descriptor_pool
from tensorflow.core.example import example_pb2, feature_pb2
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2
from tensorflow.core.protobuf import struct_pb2
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    inference_pb2,
    input_pb2,
    model_management_pb2,
    model_pb2,
    model_service_pb2,
    predict_pb2,
    prediction_service_pb2,
    regression_pb2,
    status_pb2,
)
from tensorflow_serving.config import model_server_config_pb2

from rnnserve.serving import protos

TF_SERVICE_FILES = [prediction_service_pb2.DESCRIPTOR, model_service_pb2.DESCRIPTOR]


def _field_facts(field):
    repeated = field.is_repeated if hasattr(field, "is_repeated") else field.label == field.LABEL_REPEATED
    return (
        field.name,
        field.type,
        repeated,
        field.message_type.full_name if field.message_type else None,
        field.enum_type.full_name if field.enum_type else None,
        field.json_name,
        field.containing_oneof.name if field.containing_oneof else None,
        field.has_presence,
    )


def _compare_enum(ours, theirs):
    assert [(v.name, v.number) for v in ours.values] == [(v.name, v.number) for v in theirs.values], (
        ours.full_name
    )


def _compare_message(ours, theirs):
    assert ours.full_name == theirs.full_name
    assert {f.number: _field_facts(f) for f in ours.fields} == {
        f.number: _field_facts(f) for f in theirs.fields
    }, ours.full_name
    assert ours.GetOptions().map_entry == theirs.GetOptions().map_entry
    assert sorted(n.name for n in ours.nested_types) == sorted(n.name for n in theirs.nested_types), (
        ours.full_name
    )
    for nested in ours.nested_types:
        _compare_message(nested, theirs.nested_types_by_name[nested.name])
    assert sorted(e.name for e in ours.enum_types) == sorted(e.name for e in theirs.enum_types)
    for enum in ours.enum_types:
        _compare_enum(enum, theirs.enum_types_by_name[enum.name])


def _our_files():
    """Our copies of TensorFlow's and TF Serving's files (not package `rnnserve`, our own service)."""
    files = [
        protos.POOL.FindFileByName(f"rnnserve/serving/protos/{path.name}")
        for path in sorted(pathlib.Path(protos.__file__).parent.glob("*.proto"))
    ]
    return [file for file in files if file.package != "rnnserve"]


def test_every_message_and_enum_matches_tensorflow_field_for_field():
    default = descriptor_pool.Default()
    compared = 0
    for file in _our_files():
        for message in file.message_types_by_name.values():
            _compare_message(message, default.FindMessageTypeByName(message.full_name))
            compared += 1
        for enum in file.enum_types_by_name.values():
            _compare_enum(enum, default.FindEnumTypeByName(enum.full_name))
    assert compared >= 60


def test_services_match_tensorflow_serving():
    for tf_file in TF_SERVICE_FILES:
        for service in tf_file.services_by_name.values():
            ours = protos.POOL.FindServiceByName(service.full_name)
            assert [
                (
                    m.name,
                    m.input_type.full_name,
                    m.output_type.full_name,
                    m.client_streaming,
                    m.server_streaming,
                )
                for m in ours.methods
            ] == [
                (
                    m.name,
                    m.input_type.full_name,
                    m.output_type.full_name,
                    m.client_streaming,
                    m.server_streaming,
                )
                for m in service.methods
            ]


def test_everything_the_client_apis_define_is_covered():
    # Every message of the TF Serving API files the client uses exists here.
    for module in (
        predict_pb2, get_model_metadata_pb2, get_model_status_pb2, classification_pb2, regression_pb2,
        inference_pb2, input_pb2, model_pb2, model_management_pb2, status_pb2, model_server_config_pb2,
        tensor_pb2, tensor_shape_pb2, types_pb2, feature_pb2, example_pb2, struct_pb2,
    ):  # fmt: skip
        for name in module.DESCRIPTOR.message_types_by_name:
            assert (
                getattr(protos, name).DESCRIPTOR.full_name
                == module.DESCRIPTOR.message_types_by_name[name].full_name
            )


@pytest.mark.parametrize("order", ["ours_first", "tf_first"])
def test_both_sets_load_in_one_process_in_either_order(order):
    ours = "from rnnserve.serving import protos; from rnnserve.serving.protos import services"
    theirs = (
        "from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc, "
        "model_service_pb2_grpc, get_model_metadata_pb2"
    )
    check = textwrap.dedent(
        """
        from google.protobuf import descriptor_pool
        assert protos.PredictRequest is not predict_pb2.PredictRequest
        assert descriptor_pool.Default().FindMessageTypeByName("tensorflow.serving.PredictRequest") \\
            is predict_pb2.PredictRequest.DESCRIPTOR
        assert protos.POOL.FindMessageTypeByName("tensorflow.serving.PredictRequest") \\
            is protos.PredictRequest.DESCRIPTOR
        print("ok")
        """
    )
    first, second = (ours, theirs) if order == "ours_first" else (theirs, ours)
    result = subprocess.run(
        [sys.executable, "-c", f"{first}\n{second}\n{check}"], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().endswith("ok")


def test_the_committed_descriptor_set_is_up_to_date():
    result = subprocess.run(
        [sys.executable, str(pathlib.Path(protos.__file__).resolve().parent / "regenerate.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
