"""Replays `assets.extra/tf_serving_warmup_requests` before a version serves.

The file is a TFRecord of `PredictionLog` protos, TF Serving's format
(`saved_model_warmup_util.cc`): each record's request (predict, classify,
regress or multi_inference) is run against the version being loaded
(once, or `--num_request_iterations_for_warmup` times),
whatever model name it carries. At most 1000 records are read. A missing
file is fine; an unreadable record or a failing request fails the load, so
a version whose warmup fails never becomes AVAILABLE.

Example:

```python
count = run_warmup(servable)   # 0 when the export has no warmup file
```
"""

from __future__ import annotations

import os

import tensorflow as tf
from tensorflow_serving.apis import prediction_log_pb2

from rnnserve.contract import WARMUP_FILE
from rnnserve.serving import servable_inference
from rnnserve.serving.errors import ServingError, tf_error
from rnnserve.serving.servable import Servable

MAX_RECORDS = 1000  # WarmupConsts::kMaxNumRecords


def _records(path: str):
    try:
        for record in tf.data.TFRecordDataset(path):
            yield record.numpy()
    except tf.errors.OpError as error:
        failure = tf_error(error)
        if failure.code == "DATA_LOSS":
            raise ServingError(
                "DATA_LOSS", f"{failure.message}. Please verify your warmup data is in TFRecord format."
            ) from None
        raise failure from None


def replay(
    servable: Servable, log: prediction_log_pb2.PredictionLog, method_name_check: bool = False
) -> None:
    """Runs the request one PredictionLog holds against `servable`."""
    kind = log.WhichOneof("log_type")
    if kind == "predict_log":
        request = log.predict_log.request
        servable_inference.predict(
            servable, request.model_spec.signature_name, request.inputs, request.output_filter
        )
    elif kind == "classify_log":
        servable_inference.classify(servable, log.classify_log.request, 0, method_name_check)
    elif kind == "regress_log":
        servable_inference.regress(servable, log.regress_log.request, 0, method_name_check)
    elif kind == "multi_inference_log":
        servable_inference.multi_inference(servable, log.multi_inference_log.request, 0, method_name_check)
    else:
        raise ServingError("UNIMPLEMENTED", f"Unsupported log_type for warmup: {kind}")


def run_warmup(servable: Servable, iterations: int = 1, method_name_check: bool = False) -> int:
    """Replays the version's warmup file, each record `iterations` times; returns the records read.

    Raises:
        ServingError: a record does not parse, there are more than 1000, or a
            request fails (with that request's error).
    """
    path = os.path.join(servable.path, WARMUP_FILE)
    if not os.path.exists(path):
        return 0
    count = 0
    for record in _records(path):
        log = prediction_log_pb2.PredictionLog()
        try:
            log.ParseFromString(record)
        except Exception:  # protobuf's DecodeError and friends
            raise ServingError("INVALID_ARGUMENT", f"Failed to parse warmup record from {path}") from None
        for _ in range(iterations):
            replay(servable, log, method_name_check)
        count += 1
        if count > MAX_RECORDS:
            raise ServingError(
                "INVALID_ARGUMENT", f"Number of warmup records exceeds the maximum ({MAX_RECORDS}) at {path}"
            )
    return count
