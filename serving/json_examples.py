"""REST `:classify` / `:regress` bodies <-> protos, with TF Serving's rules.

A request is `{"signature_name": ..., "context": {...}, "examples": [{...}, ...]}`;
each example is an object of features, a feature a value or a list of
values: strings and `{"b64": ...}` become a bytes_list, JSON numbers with a
fraction a float_list, integers and booleans an int64_list. The reply is
`{"results": [[[label, score], ...], ...]}` for classify and
`{"results": [value, ...]}` for regress.

Example:

>>> request = input_from_json({"examples": [{"x": [1.0, 2.0]}]})
>>> len(request.example_list.examples)
1
"""

from __future__ import annotations

import json

import numpy as np
from tensorflow.core.example import example_pb2, feature_pb2
from tensorflow_serving.apis import input_pb2

from rnnserve.serving.json_tensors import decode_b64, invalid, is_b64, json_text, json_type

_KINDS = {"bytes_list": "bytes", "float_list": "float", "int64_list": "int64"}


def _add(value, name: str, feature: feature_pb2.Feature) -> None:
    """Appends one JSON value to a Feature, which keeps a single kind."""
    if isinstance(value, bool):
        kind, item = "int64_list", int(value)
    elif isinstance(value, str):
        kind, item = "bytes_list", value.encode("utf-8")
    elif is_b64(value):
        kind, item = "bytes_list", decode_b64(value)
    elif isinstance(value, float):
        if np.isfinite(value) and abs(value) > np.finfo(np.float32).max:
            raise invalid(
                f"Cannot convert JSON value: {json_text(value)} to float without loss of precision."
            )
        kind, item = "float_list", value
    elif isinstance(value, int):
        if value > 2**63 - 1:
            raise invalid(f"Feature: {name} has uint64 element. Only int64 is supported.")
        if value < -(2**63):
            raise invalid(f"Feature: {name} has element with unexpected JSON type: Number")
        kind, item = "int64_list", value
    else:
        raise invalid(f"Feature: {name} has element with unexpected JSON type: {json_type(value)}")
    current = feature.WhichOneof("kind")
    if current not in (None, kind):
        raise invalid(f"Unexpected element type in feature: {name} expecting type: {_KINDS[current]}")
    getattr(feature, kind).value.append(item)


def _example(value) -> example_pb2.Example:
    if not isinstance(value, dict):
        raise invalid(f"Example must be JSON object but got JSON {json_type(value)}")
    example = example_pb2.Example()
    for name, content in value.items():
        feature = example.features.feature[name]
        for item in content if isinstance(content, list) else [content]:
            _add(item, name, feature)
    return example


def input_from_json(doc: dict) -> input_pb2.Input:
    """The `Input` (examples, optional context) of a classify/regress body."""
    has_context = "context" in doc
    request = input_pb2.Input()
    if has_context:
        request.example_list_with_context.context.CopyFrom(_example(doc["context"]))
    if "examples" not in doc:
        raise invalid(
            f"JSON Value: {json_text(doc)} When method is classify, key 'examples' is expected and was not found"
        )
    examples = doc["examples"]
    if not isinstance(examples, list):
        raise invalid(f"JSON Value: {json_text(doc)} Expecting 'examples' value to be an list/array")
    if not examples:
        raise invalid(f"JSON Value: {json_text(doc)} 'examples' value is an empty array")
    target = request.example_list_with_context if has_context else request.example_list
    for value in examples:
        target.examples.add().CopyFrom(_example(value))
    return request


def _score(value: float) -> float:
    return float(str(np.float32(value)))


def classification_to_json(result) -> str:
    """`{"results": [[[label, score], ...], ...]}` for a ClassificationResult."""
    if not result.classifications:
        raise invalid("Cannot convert empty ClassificationResults to JSON")
    rows = [
        [[item.label, _score(item.score)] for item in classifications.classes]
        for classifications in result.classifications
    ]
    return json.dumps({"results": rows}, allow_nan=True)


def regression_to_json(result) -> str:
    """`{"results": [value, ...]}` for a RegressionResult."""
    if not result.regressions:
        raise invalid("Cannot convert empty RegressionResults to JSON")
    return json.dumps({"results": [_score(item.value) for item in result.regressions]}, allow_nan=True)
