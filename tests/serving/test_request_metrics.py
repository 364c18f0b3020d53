"""Request metrics: every Predict is counted once, under the status it ended with.

Oracle: the `:tensorflow:serving:request_count{model_name,status}` samples
of the server's Prometheus page, read before and after each call.
"""

import numpy as np
import pytest
from conftest import LM
from tensorflow_serving.apis import model_pb2

from rnnserve.serving.errors import ServingError


def request_counts(server) -> dict:
    """status -> request_count of the LM, from the Prometheus page."""
    prefix = f':tensorflow:serving:request_count{{model_name="{LM}",status="'
    counts = {}
    for line in server.metrics.page().decode().splitlines():
        if line.startswith(prefix):
            status, value = line[len(prefix) :].split('"} ')
            counts[status] = float(value)
    return counts


def counted(server, call) -> dict:
    """status -> how many requests `call()` added to the counter."""
    before = request_counts(server)
    call()
    after = request_counts(server)
    return {
        status: after[status] - before.get(status, 0.0)
        for status in after
        if after[status] != before.get(status)
    }


def predict(server, inputs):
    return server.core.predict(model_pb2.ModelSpec(name=LM), inputs, entrypoint="GRPC")


def test_a_successful_predict_is_counted_ok(server):
    assert counted(server, lambda: predict(server, {"tokens": np.array([[1, 2]], np.int32)})) == {"OK": 1}


def test_a_rejected_predict_is_counted_under_its_error_code(server):
    def call():
        with pytest.raises(ServingError):
            predict(server, {"tokens": np.array([1, 2], np.int32)})  # rank 1, the signature wants (B, T)

    assert counted(server, call) == {"INVALID_ARGUMENT": 1}


def test_an_unexpected_failure_is_counted_internal_not_ok(server):
    def broken_inputs(servable):  # a bug inside the request, after the version was resolved
        raise RuntimeError("a bug")

    def call():
        with pytest.raises(RuntimeError):
            predict(server, broken_inputs)

    assert counted(server, call) == {"INTERNAL": 1}
