"""--enable_batching: concurrent Predict calls merge along the batch dimension.

Oracles: each caller's answer equals a direct, unbatched SavedModel call on
its own rows; the batches that ran are read from the server's Prometheus
page or recorded where the batch thread calls the servable; overload gives
TF Serving's UNAVAILABLE (HTTP 503).

Nothing here depends on timing: a batch either fills up (the shared
server's 60 s batch timeout never fires in a test), or the only batch
thread is held inside a run until the test releases it, so what is queued
meanwhile cannot drain.
"""

import json
import queue
import threading
import time
import urllib.error
import urllib.request

import numpy as np
import pytest
from conftest import LM, lm_generate_inputs, start_server
from google.protobuf import text_format
from tensorflow_serving.apis import model_pb2

from rnnserve.serving.batching import Batcher
from rnnserve.serving.client import PredictionClient
from rnnserve.serving.config_protos import BatchingParameters
from rnnserve.serving.errors import ServingError
from rnnserve.serving.metrics import Metrics
from rnnserve.serving.servable import Servable

BATCH_SIZE_METRIC = ":tensorflow:serving:batching_session:processed_batch_size"


def parameters(text):
    return text_format.Parse(text, BatchingParameters())


class HeldRuns:
    """Replaces a servable's `run`: records each run's inputs and holds it until `release` is set."""

    def __init__(self, servable, monkeypatch):
        self.inputs = []  # the arrays of every run, in order
        self.running = threading.Event()  # set once a run has started
        self.release = threading.Event()
        real_run = servable.run

        def run(signature_name, arrays, aliases, timeout_ms=0):
            self.inputs.append(arrays)
            self.running.set()
            assert self.release.wait(timeout=60), "the test never released the held run"
            return real_run(signature_name, arrays, aliases, timeout_ms)

        monkeypatch.setattr(servable, "run", run)


@pytest.fixture(scope="module")
def batching_server(exports):
    """Batches of up to 8 rows that run only when full: the 60 s timeout never fires in a test."""
    running = start_server(
        {LM: exports[LM]},
        batching=parameters(
            "max_batch_size { value: 8 } batch_timeout_micros { value: 60000000 } "
            "num_batch_threads { value: 1 } allowed_batch_sizes: 4 allowed_batch_sizes: 8"
        ),
    )
    yield running
    running.stop(grace=2)


@pytest.fixture(scope="module")
def servable(lm_path):
    """The LM loaded on its own, for Batchers built by the tests."""
    loaded = Servable(LM, 1, lm_path)
    yield loaded
    loaded.close()


def batches_run(server) -> tuple[float, float]:
    """(batches run, rows run) so far, from the processed_batch_size histogram."""
    totals = {}
    for line in server.metrics.page().decode().splitlines():
        for suffix in ("_count", "_sum"):
            if line.startswith(BATCH_SIZE_METRIC + suffix + "{"):
                totals[suffix] = float(line.rsplit(" ", 1)[1])
    return totals.get("_count", 0.0), totals.get("_sum", 0.0)


def test_concurrent_requests_run_as_one_batch_with_correct_slices(batching_server, direct):
    client = PredictionClient(f"127.0.0.1:{batching_server.grpc_port}", timeout=30)
    rng = np.random.default_rng(0)
    requests = [
        rng.integers(1, 20, (rows, 3)).astype(np.int32) for rows in (1, 3, 4)
    ]  # 8 rows: one full batch
    results = [None] * len(requests)

    def call(i):
        results[i] = client.predict(LM, {"tokens": requests[i]})["logits"]

    batches_before, rows_before = batches_run(batching_server)
    threads = [threading.Thread(target=call, args=(i,)) for i in range(len(requests))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for tokens, got in zip(requests, results):
        np.testing.assert_allclose(
            got, direct("serving_default", tokens=tokens)["logits"], rtol=1e-5, atol=1e-6
        )
    batches_after, rows_after = batches_run(batching_server)
    assert (batches_after - batches_before, rows_after - rows_before) == (
        1,
        8,
    )  # separately: 3 batches, 12 rows


def test_a_lone_request_is_padded_to_the_next_allowed_size_by_repeating_its_first_row(
    servable, monkeypatch, direct
):
    runs = HeldRuns(servable, monkeypatch)
    runs.release.set()
    batcher = Batcher(
        parameters(
            "max_batch_size { value: 8 } num_batch_threads { value: 1 } allowed_batch_sizes: 4 allowed_batch_sizes: 8"
        ),
        Metrics(),
    )
    tokens = np.array([[1, 2], [3, 4], [5, 6]], np.int32)
    try:
        got = batcher.run(servable, "serving_default", {"tokens": tokens}, ["logits"])
    finally:
        batcher.close()
    np.testing.assert_array_equal(runs.inputs[0]["tokens"], np.concatenate([tokens, tokens[:1]]))
    np.testing.assert_allclose(
        got["logits"], direct("serving_default", tokens=tokens)["logits"], rtol=1e-5, atol=1e-6
    )


def queued_requests(batcher) -> int:
    """Requests waiting in the batcher's queues (its private state, read under its lock)."""
    with batcher._ready:
        return sum(len(queue.tasks) for queue in batcher._queues.values())


def test_a_request_that_timed_out_in_the_queue_never_runs_and_the_others_still_do(
    servable, monkeypatch, direct
):
    runs = HeldRuns(servable, monkeypatch)
    batcher = Batcher(parameters("max_batch_size { value: 1 } num_batch_threads { value: 1 }"), Metrics())
    first, waiting, late = (np.array([[i, i + 1]], np.int32) for i in (1, 4, 7))
    results = {}

    def call(name, tokens):
        results[name] = batcher.run(servable, "serving_default", {"tokens": tokens}, ["logits"])

    threads = [threading.Thread(target=call, args=("first", first))]
    try:
        threads[0].start()
        assert runs.running.wait(timeout=60)  # the only batch thread is now held in `first`'s run
        threads.append(threading.Thread(target=call, args=("waiting", waiting)))
        threads[1].start()
        while queued_requests(batcher) < 1:  # `waiting` is queued ahead of `late`
            assert threads[1].is_alive()
            time.sleep(0.001)
        with pytest.raises(ServingError) as caught:  # nothing can leave the queue before `late`'s deadline
            batcher.run(servable, "serving_default", {"tokens": late}, ["logits"], timeout_ms=10)
        assert caught.value.code == "DEADLINE_EXCEEDED"
        assert queued_requests(batcher) == 1
    finally:
        runs.release.set()
        for thread in threads:
            thread.join()
        batcher.close()  # lets every queued batch run first
    assert [arrays["tokens"].tolist() for arrays in runs.inputs] == [first.tolist(), waiting.tolist()]
    expected = direct("serving_default", tokens=waiting)["logits"]
    np.testing.assert_allclose(results["waiting"]["logits"], expected, rtol=1e-5, atol=1e-6)


def test_signatures_with_scalar_inputs_run_unbatched(batching_server, direct):
    client = PredictionClient(f"127.0.0.1:{batching_server.grpc_port}", timeout=30)
    inputs = lm_generate_inputs(np.array([[4, 5]], np.int32), max_new_tokens=4)
    got = client.predict(LM, inputs, signature_name="generate")
    np.testing.assert_array_equal(got["tokens"], direct("generate", **inputs)["tokens"])


def test_a_request_larger_than_max_batch_size_is_invalid_argument(batching_server):
    client = PredictionClient(f"127.0.0.1:{batching_server.grpc_port}", timeout=30)
    with pytest.raises(ServingError) as caught:
        client.predict(LM, {"tokens": np.ones((9, 2), np.int32)})
    assert (caught.value.code, caught.value.message) == (
        "INVALID_ARGUMENT",
        "Task size 9 is larger than maximum input batch size 8",
    )


def test_a_full_queue_is_unavailable_503(exports, monkeypatch):
    """Queue bound: max_enqueued_batches x max_batch_size = 2 rows, while the batch thread is held."""
    server = start_server(
        {LM: exports[LM]},
        batching=parameters(
            "max_batch_size { value: 2 } max_enqueued_batches { value: 1 } num_batch_threads { value: 1 }"
        ),
    )
    with server.manager.lease(model_pb2.ModelSpec(name=LM)) as servable:
        runs = HeldRuns(servable, monkeypatch)
    url = f"http://127.0.0.1:{server.rest_port}/v1/models/{LM}:predict"
    answers = queue.Queue()

    def call(rows):
        request = urllib.request.Request(url, data=json.dumps({"instances": [[1, 2, 3]] * rows}).encode())
        try:
            with urllib.request.urlopen(request, timeout=60) as reply:
                answers.put((rows, reply.status, None))
        except urllib.error.HTTPError as error:
            answers.put((rows, error.code, json.loads(error.read())["error"]))

    threads = [threading.Thread(target=call, args=(1,))]
    try:
        threads[0].start()
        assert runs.running.wait(timeout=60)  # the one-row call is running, held: nothing drains
        threads += [threading.Thread(target=call, args=(2,)) for _ in range(2)]
        for thread in threads[1:]:
            thread.start()
        first_answer = answers.get(timeout=60)  # whichever two-row call came second: 2 + 2 rows > 2
        runs.release.set()
        for thread in threads:
            thread.join()
    finally:
        runs.release.set()
        server.stop(grace=2)
    assert first_answer == (2, 503, "The batch scheduling queue to which this task was submitted is full")
    assert sorted(answers.get_nowait() for _ in range(2)) == [(1, 200, None), (2, 200, None)]
    assert [len(arrays["tokens"]) for arrays in runs.inputs] == [1, 2]  # the refused call never ran
