"""Warmup records: `assets.extra/tf_serving_warmup_requests`, TF Serving's format.

TF Serving replays this file when it loads a version, before the version
serves, so the first real request does not pay for graph optimisation and
kernel initialisation. The file is a TFRecord of `PredictionLog` protos
(`tensorflow_serving/apis/prediction_log.proto`); each record here holds a
`PredictLog` whose `request` names its `signature_name` and carries the
inputs as `TensorProto`s. `model_spec.name` is left empty: the name a model
is served under is chosen by the server's config, and TF Serving ignores it
when replaying warmup.

Example:

>>> log = predict_log("step", {"tokens": np.ones((1, 4), "int32"), "state": np.zeros((1, 16), "float32")})
>>> write_warmup_file("exports/lm/.tmp-export-x/assets.extra/tf_serving_warmup_requests", [log])
"""

from __future__ import annotations

import os

import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_log_pb2


def predict_log(signature_name, inputs):
    """One `PredictionLog` holding a `PredictRequest` for `signature_name`.

    Args:
        signature_name: The signature the request calls.
        inputs: `{input name: array-like}`; dtypes are kept as given.

    Returns:
        A `prediction_log_pb2.PredictionLog`.
    """
    request = predict_pb2.PredictRequest()
    request.model_spec.signature_name = signature_name
    for name, value in inputs.items():
        request.inputs[name].CopyFrom(tf.make_tensor_proto(np.asarray(value)))
    return prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request))


def write_warmup_file(path, logs):
    """Writes `PredictionLog`s as a TFRecord file at `path`."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with tf.io.TFRecordWriter(path) as writer:
        for log in logs:
            writer.write(log.SerializeToString())
