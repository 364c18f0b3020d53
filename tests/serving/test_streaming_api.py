"""Streaming generation over gRPC (`rnnserve.GenerationService`) and REST (Server-Sent Events).

Oracles: the export's own `generate` and `decode` signatures called with TF
Serving's stock Predict stub (the concatenated stream must be exactly their
tokens, text and state for the same prompt, state and seed), the server's
own Prometheus page (`:rnnserve:generated_tokens_total`,
`:rnnserve:active_streams`) for the work a cancelled stream leaves undone,
the HTML standard's event-stream format (and the real `curl -N`), and TF
Serving's status codes and HTTP map for the errors.
"""

from __future__ import annotations

import gzip
import http.client
import json
import os
import shutil
import socket
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import grpc
import numpy as np
import pytest
import tensorflow as tf
from conftest import CLS, LM, lm_generate_inputs, start_server
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from rnnserve import contract
from rnnserve.serving import protos
from rnnserve.serving.client import PredictionClient
from rnnserve.serving.config_protos import MonitoringConfig
from rnnserve.serving.errors import ServingError
from rnnserve.serving.protos import services
from rnnserve.serving.rest_client import RestClient, server_sent_events

TIMEOUT = 60
LONG_LIMIT = 4096  # this module's copy of the LM allows this many new tokens: long enough to cancel midway
PROMPT_TOKENS = [3, 4, 5, 9]
METRICS_PATH = "/monitoring/prometheus/metrics"
SAMPLINGS = {
    "greedy": dict(temperature=0.0, top_k=0, seed=0),
    "sampled": dict(temperature=0.9, top_k=0, seed=11),
}


@pytest.fixture(scope="module")
def long_lm(exports, tmp_path_factory) -> str:
    """A copy of the fixture LM whose rnnserve.json allows LONG_LIMIT new tokens; its base path."""
    base = tmp_path_factory.mktemp("streaming") / LM
    shutil.copytree(exports[LM], base)
    metadata_file = base / "1" / contract.METADATA_FILE
    metadata = json.loads(metadata_file.read_text())
    metadata[contract.MAX_NEW_TOKENS_LIMIT] = LONG_LIMIT
    metadata_file.write_text(json.dumps(metadata))
    return str(base)


@pytest.fixture(scope="module")
def stream_server(long_lm, exports):
    """A server of the long LM and the classifier, CORS and metrics on."""
    monitoring = MonitoringConfig()
    monitoring.prometheus_config.enable = True
    running = start_server({LM: long_lm, CLS: exports[CLS]}, monitoring=monitoring, cors=True)
    yield running
    running.stop(grace=2)


@pytest.fixture(scope="module")
def grpc_client(stream_server):
    with PredictionClient(f"127.0.0.1:{stream_server.grpc_port}", timeout=TIMEOUT) as opened:
        yield opened


@pytest.fixture(scope="module")
def rest_client(stream_server):
    return RestClient(f"127.0.0.1:{stream_server.rest_port}", timeout=TIMEOUT)


@pytest.fixture(params=["grpc", "rest"])
def client(request, grpc_client, rest_client):
    return grpc_client if request.param == "grpc" else rest_client


@pytest.fixture(scope="module")
def stock(stream_server):
    """TF Serving's own PredictionService stub on the server (the oracle's transport)."""
    with grpc.insecure_channel(f"127.0.0.1:{stream_server.grpc_port}") as channel:
        yield prediction_service_pb2_grpc.PredictionServiceStub(channel)


def predict(stock, signature: str, inputs: dict) -> dict:
    request = predict_pb2.PredictRequest()
    request.model_spec.name, request.model_spec.signature_name = LM, signature
    for alias, value in inputs.items():
        request.inputs[alias].CopyFrom(tf.make_tensor_proto(value))
    response = stock.Predict(request, timeout=TIMEOUT)
    return {alias: tf.make_ndarray(proto) for alias, proto in response.outputs.items()}


def generate_oracle(stock, tokens, max_new_tokens, temperature, top_k, seed):
    """(token ids, text, state) of the `generate` signature (and `decode` of its tokens) for one row."""
    outputs = predict(
        stock, contract.GENERATE, lm_generate_inputs([tokens], None, max_new_tokens, temperature, top_k, seed)
    )
    generated = outputs[contract.TOKENS][0]  # (N,)
    text = predict(stock, contract.DECODE, {contract.TOKENS: generated[np.newaxis]})[contract.TEXT][0]
    return generated.tolist(), text.decode("utf-8"), outputs[contract.STATE][0]


def read_stream(stream):
    """(concatenated text, all token ids, pieces) of a GenerationStream, read to its end."""
    pieces = list(stream)
    text = "".join(piece.text for piece in pieces)
    return text, [token for piece in pieces for token in piece.token_ids], pieces


def metric(stream_server, name: str, **labels) -> float:
    """One sample of the server's Prometheus page, read over HTTP (0 if absent)."""
    url = f"127.0.0.1:{stream_server.rest_port}"
    connection = http.client.HTTPConnection(url, timeout=TIMEOUT)
    connection.request("GET", METRICS_PATH)
    page = connection.getresponse().read().decode()
    connection.close()
    for family in text_string_to_metric_families(page):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return 0.0


def wait_until_idle(stream_server, timeout=30.0) -> None:
    """Waits until the server reports no active stream of the LM."""
    deadline = time.monotonic() + timeout
    while metric(stream_server, ":rnnserve:active_streams", model_name=LM) > 0:
        assert time.monotonic() < deadline, "the server still reports an active stream"
        time.sleep(0.05)


# --- the stream equals `generate` ------------------------------------------------


@pytest.mark.parametrize("sampling", sorted(SAMPLINGS))
def test_the_concatenated_stream_equals_the_generate_signature(client, stock, sampling):
    params = SAMPLINGS[sampling]
    tokens, text, state = generate_oracle(stock, PROMPT_TOKENS, 20, **params)
    with client.generate_stream(LM, tokens=PROMPT_TOKENS, max_new_tokens=20, **params) as stream:
        got_text, got_tokens, pieces = read_stream(stream)
    assert got_tokens == tokens
    assert got_text == text
    assert all(piece.token_ids for piece in pieces)  # one per token, or what a slow reader missed
    end = stream.end
    assert (end.finish_reason, end.generated_tokens, end.last_token) == ("length", 20, tokens[-1])
    assert (end.model, end.version, end.sequence_id) == (LM, 1, 0)
    np.testing.assert_allclose(end.state, state, rtol=1e-5, atol=1e-6)


def test_a_text_prompt_streams_what_generate_answers_for_its_encoding(client, stock):
    encoded = predict(stock, contract.ENCODE, {"text": np.array([b"the fox"])})
    tokens = encoded[contract.TOKENS][0, : encoded[contract.LENGTHS][0]].tolist()
    expected_tokens, expected_text, _ = generate_oracle(stock, tokens, 12, 0.7, 0, 5)
    with client.generate_stream(LM, prompt="the fox", max_new_tokens=12, temperature=0.7, seed=5) as stream:
        got_text, got_tokens, _ = read_stream(stream)
    assert (got_tokens, got_text) == (expected_tokens, expected_text)


def test_the_final_state_continues_the_sequence_like_generate(client, stock):
    with client.generate_stream(LM, tokens=PROMPT_TOKENS, max_new_tokens=6, temperature=0.0) as first:
        read_stream(first)
    with client.generate_stream(
        LM, tokens=[first.end.last_token], state=first.end.state, max_new_tokens=6, temperature=0.0
    ) as second:
        _, continued, _ = read_stream(second)
    whole, _, _ = generate_oracle(stock, PROMPT_TOKENS, 12, 0.0, 0, 0)
    assert continued == whole[6:]


def test_a_server_side_sequence_streams_on_from_where_it_stopped(client, stock):
    whole, _, _ = generate_oracle(stock, PROMPT_TOKENS, 12, 0.0, 0, 0)
    start = contract.SEQUENCE_START
    with client.generate_stream(
        LM, tokens=PROMPT_TOKENS, max_new_tokens=6, temperature=0.0, sequence_control=start
    ) as first:
        _, head, _ = read_stream(first)
    assert first.end.sequence_id > 0 and first.end.state is None  # the server keeps the state
    with client.generate_stream(
        LM,
        tokens=[first.end.last_token],
        max_new_tokens=6,
        temperature=0.0,
        sequence_id=first.end.sequence_id,
        sequence_control=contract.SEQUENCE_END,
    ) as second:
        _, tail, _ = read_stream(second)
    assert head + tail == whole and second.end.sequence_id == first.end.sequence_id
    with pytest.raises(ServingError) as raised:  # ended: gone
        read_stream(client.generate_stream(LM, tokens=[1], sequence_id=first.end.sequence_id, temperature=0))
    assert raised.value.code == "NOT_FOUND"


def test_concurrent_streams_over_both_apis_each_equal_their_own_generate(grpc_client, rest_client, stock):
    seeds = range(1, 7)
    expected = {seed: generate_oracle(stock, PROMPT_TOKENS, 16, 0.9, 0, seed)[0] for seed in seeds}

    def run(seed):
        client = grpc_client if seed % 2 else rest_client
        with client.generate_stream(
            LM, tokens=PROMPT_TOKENS, max_new_tokens=16, temperature=0.9, seed=seed
        ) as s:
            return read_stream(s)[1]

    with ThreadPoolExecutor(max_workers=len(seeds)) as pool:
        got = dict(zip(seeds, pool.map(run, seeds)))
    assert got == expected


# --- stop strings ------------------------------------------------------------------


def test_a_stop_string_ends_the_stream_before_it(client, stock):
    tokens, text, _ = generate_oracle(stock, PROMPT_TOKENS, 30, 0.9, 0, 3)
    stop = text[8:10]
    cut = text.find(stop)
    # The token that completes the stop string: the first prefix whose text contains it.
    completing = next(n for n in range(1, 31) if stop in _decode(stock, tokens[:n]))
    with client.generate_stream(
        LM, tokens=PROMPT_TOKENS, max_new_tokens=30, temperature=0.9, seed=3, stop=["#never#", stop]
    ) as stream:
        got_text, got_tokens, _ = read_stream(stream)
    assert got_text == text[:cut] and stop not in got_text
    assert stream.end.finish_reason == "stop"
    assert stream.end.generated_tokens == completing
    assert got_tokens == tokens[:completing]


def _decode(stock, tokens) -> str:
    return predict(stock, contract.DECODE, {contract.TOKENS: np.array([tokens], np.int32)})[contract.TEXT][
        0
    ].decode()


# --- cancelling frees the server's work ------------------------------------------------


def test_a_grpc_cancel_mid_stream_stops_the_servers_work(stream_server):
    before = metric(stream_server, ":rnnserve:generated_tokens_total", model_name=LM)
    cancelled = metric(stream_server, ":rnnserve:streams_total", model_name=LM, finish_reason="cancelled")
    with grpc.insecure_channel(f"127.0.0.1:{stream_server.grpc_port}") as channel:
        request = protos.GenerateRequest(tokens=PROMPT_TOKENS, max_new_tokens=LONG_LIMIT, temperature=1.0)
        request.model_spec.name = LM
        call = services.GenerationServiceStub(channel).Generate(request, timeout=TIMEOUT)
        first = next(call)
        assert first.token_ids
        call.cancel()
        with pytest.raises(grpc.RpcError) as raised:
            list(call)
        assert raised.value.code() == grpc.StatusCode.CANCELLED
    wait_until_idle(stream_server)
    generated = metric(stream_server, ":rnnserve:generated_tokens_total", model_name=LM) - before
    assert 1 <= generated < LONG_LIMIT // 4
    after = metric(stream_server, ":rnnserve:streams_total", model_name=LM, finish_reason="cancelled")
    assert after == cancelled + 1


def test_a_grpc_deadline_ends_the_servers_work(stream_server):
    before = metric(stream_server, ":rnnserve:generated_tokens_total", model_name=LM)
    with PredictionClient(f"127.0.0.1:{stream_server.grpc_port}", timeout=0.5) as short:
        with pytest.raises(ServingError) as raised:
            read_stream(short.generate_stream(LM, tokens=PROMPT_TOKENS, max_new_tokens=LONG_LIMIT))
    assert raised.value.code == "DEADLINE_EXCEEDED"
    wait_until_idle(stream_server)
    assert metric(stream_server, ":rnnserve:generated_tokens_total", model_name=LM) - before < LONG_LIMIT


def test_a_client_cancel_ends_iteration_quietly(client, stream_server):
    stream = client.generate_stream(LM, tokens=PROMPT_TOKENS, max_new_tokens=LONG_LIMIT)
    pieces = []
    for piece in stream:
        pieces.append(piece)
        if len(pieces) == 3:
            stream.cancel()
    assert 3 <= len(pieces) < LONG_LIMIT and stream.end is None
    wait_until_idle(stream_server)


def _post(port: int, path: str, body: bytes, version: str = "HTTP/1.1", headers: str = "") -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    head = (
        f"POST {path} {version}\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n{headers}\r\n"
    )
    sock.sendall(head.encode() + body)
    return sock


def test_an_sse_client_closing_its_socket_stops_the_servers_work(stream_server):
    before = metric(stream_server, ":rnnserve:generated_tokens_total", model_name=LM)
    body = json.dumps({"tokens": PROMPT_TOKENS, "max_new_tokens": LONG_LIMIT, "temperature": 1.0}).encode()
    sock = _post(stream_server.rest_port, f"/v1/models/{LM}:generate_stream", body)
    received = b""
    while b"data: " not in received:
        chunk = sock.recv(4096)
        assert chunk, "the server closed the connection before the first event"
        received += chunk
    sock.close()
    wait_until_idle(stream_server)
    generated = metric(stream_server, ":rnnserve:generated_tokens_total", model_name=LM) - before
    assert 1 <= generated < LONG_LIMIT // 4


def test_stopping_the_server_ends_open_streams_within_the_grace_period(long_lm):
    running = start_server({LM: long_lm})
    grpc_client = PredictionClient(f"127.0.0.1:{running.grpc_port}", timeout=TIMEOUT)
    rest_client = RestClient(f"127.0.0.1:{running.rest_port}", timeout=TIMEOUT)
    streams = [
        c.generate_stream(LM, tokens=PROMPT_TOKENS, max_new_tokens=LONG_LIMIT)
        for c in (grpc_client, rest_client)
    ]
    readers = [iter(stream) for stream in streams]
    for reader in readers:
        next(reader)  # both are under way
    started = time.monotonic()
    running.stop(grace=0.5)
    assert time.monotonic() - started < 20
    for reader in readers:  # each ends: cut off by the shutdown, or finished within the grace period
        try:
            for _ in reader:
                pass
        except ServingError as error:
            assert error.code in ("UNAVAILABLE", "CANCELLED")
    grpc_client.close()


# --- the wire: event-stream format, headers, curl -------------------------------------------


def test_the_sse_reply_is_a_chunked_uncached_event_stream_with_cors_headers(stream_server, stock):
    tokens, text, _ = generate_oracle(stock, PROMPT_TOKENS, 5, 0.0, 0, 0)
    connection = http.client.HTTPConnection("127.0.0.1", stream_server.rest_port, timeout=TIMEOUT)
    body = json.dumps({"tokens": PROMPT_TOKENS, "max_new_tokens": 5})  # temperature left out: 0, greedy
    connection.request("POST", f"/v1/models/{LM}/versions/1:generate_stream", body)
    reply = connection.getresponse()
    assert reply.status == 200
    assert reply.getheader("Content-Type") == "text/event-stream"
    assert reply.getheader("Cache-Control") == "no-cache"
    assert reply.getheader("Transfer-Encoding") == "chunked"
    assert reply.getheader("Access-Control-Allow-Origin") == "*"
    events = list(server_sent_events(reply))
    kinds = [event for event, _ in events]  # pieces a slow reader missed come merged in one event
    assert kinds[-1] == "done" and set(kinds[:-1]) == {"message"}
    pieces = [json.loads(data) for _, data in events[:-1]]
    assert [token for piece in pieces for token in piece["token_ids"]] == tokens
    assert "".join(piece["text"] for piece in pieces) == text
    done = json.loads(events[-1][1])
    assert done["finish_reason"] == "length" and done["generated_tokens"] == 5
    assert done["model_spec"] == {"name": LM, "version": 1} and done["last_token"] == tokens[-1]
    # The connection stays open for the next request (keep-alive after a chunked reply).
    connection.request("GET", f"/v1/models/{LM}")
    assert connection.getresponse().status == 200
    connection.close()


def test_a_gzipped_chunked_request_body_is_read_as_for_predict(stream_server, stock):
    tokens, _, _ = generate_oracle(stock, PROMPT_TOKENS, 4, 0.0, 0, 0)
    packed = gzip.compress(json.dumps({"tokens": PROMPT_TOKENS, "max_new_tokens": 4}).encode())
    chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(packed), packed)
    connection = http.client.HTTPConnection("127.0.0.1", stream_server.rest_port, timeout=TIMEOUT)
    connection.putrequest("POST", f"/v1/models/{LM}:generate_stream")
    for name, value in (("Transfer-Encoding", "chunked"), ("Content-Encoding", "gzip")):
        connection.putheader(name, value)
    connection.endheaders(chunked)
    reply = connection.getresponse()
    assert reply.status == 200
    events = list(server_sent_events(reply))
    connection.close()
    assert [token for _, data in events[:-1] for token in json.loads(data)["token_ids"]] == tokens


def test_an_http_1_0_client_gets_a_close_delimited_stream(stream_server):
    body = json.dumps({"tokens": PROMPT_TOKENS, "max_new_tokens": 3}).encode()
    sock = _post(stream_server.rest_port, f"/v1/models/{LM}:generate_stream", body, version="HTTP/1.0")
    received = b""
    while chunk := sock.recv(65536):
        received += chunk
    sock.close()
    head, _, payload = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and b"Transfer-Encoding" not in head
    data = [line[len(b"data: ") :] for line in payload.split(b"\n") if line.startswith(b"data: ")]
    assert b"event: done\n" in payload and json.loads(data[-1])["generated_tokens"] == 3
    assert sum(len(json.loads(piece)["token_ids"]) for piece in data[:-1]) == 3


def test_curl_n_prints_the_data_events_as_they_come(stream_server, stock):
    curl = shutil.which("curl")
    if curl is None:
        if os.environ.get("CI"):
            pytest.fail("curl is not installed (CI installs it)")
        pytest.skip("needs the curl binary")
    _, text, _ = generate_oracle(stock, PROMPT_TOKENS, 8, 0.0, 0, 0)
    body = json.dumps({"tokens": PROMPT_TOKENS, "max_new_tokens": 8, "temperature": 0})
    url = f"http://127.0.0.1:{stream_server.rest_port}/v1/models/{LM}:generate_stream"
    result = subprocess.run(
        [curl, "-sS", "-N", "--fail-with-body", "-H", "Content-Type: application/json", "-d", body, url],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert result.returncode == 0, result.stderr
    data = [line[len("data: ") :] for line in result.stdout.splitlines() if line.startswith("data: ")]
    assert "event: done" in result.stdout and json.loads(data[-1])["generated_tokens"] == 8
    assert sum(len(json.loads(piece)["token_ids"]) for piece in data[:-1]) == 8  # 8 events, or fewer merged
    assert "".join(json.loads(piece)["text"] for piece in data[:-1]) == text


# --- errors before the stream, health -----------------------------------------------------


ERRORS = {  # what the request gets wrong -> (gRPC code, HTTP status)
    "unknown model": (dict(model="no-such-model", tokens=[1]), "NOT_FOUND", 404),
    "not a language model": (dict(model=CLS, tokens=[1]), "FAILED_PRECONDITION", 400),
    "too many new tokens": (
        dict(model=LM, tokens=[1], max_new_tokens=LONG_LIMIT + 1),
        "INVALID_ARGUMENT",
        400,
    ),
    "negative top_k": (dict(model=LM, tokens=[1], top_k=-1), "INVALID_ARGUMENT", 400),
    "a token outside the vocabulary": (dict(model=LM, tokens=[10_000]), "INVALID_ARGUMENT", 400),
    "a state of the wrong width": (dict(model=LM, tokens=[1], state=[0.0, 1.0]), "INVALID_ARGUMENT", 400),
    "unknown version": (dict(model=LM, tokens=[1], version=7), "NOT_FOUND", 404),
}


@pytest.mark.parametrize("case", sorted(ERRORS))
def test_a_bad_request_fails_before_the_stream_with_tf_servings_code(grpc_client, stream_server, case):
    fields, code, http_status = ERRORS[case]
    fields = dict(fields)
    with pytest.raises(ServingError) as raised:
        read_stream(grpc_client.generate_stream(fields.pop("model"), **fields))
    assert raised.value.code == code
    fields = dict(ERRORS[case][0])
    model, version = fields.pop("model"), fields.pop("version", None)
    path = f"/v1/models/{model}" + (f"/versions/{version}" if version else "") + ":generate_stream"
    connection = http.client.HTTPConnection("127.0.0.1", stream_server.rest_port, timeout=TIMEOUT)
    connection.request("POST", path, json.dumps(fields))
    reply = connection.getresponse()
    assert reply.status == http_status
    assert reply.getheader("Content-Type") == "application/json"
    assert json.loads(reply.read())["error"] == raised.value.message
    connection.close()


@pytest.mark.parametrize(
    "body, message",
    [
        (b"", "JSON Parse error"),
        (b'{"tokens": [1], "temprature": 1}', "temprature"),
        (b'{"tokens": "abc"}', "tokens"),
        (b'{"tokens": [1], "model_spec": {"name": "x"}}', "URL"),
        (b'{"tokens": [1], "prompt": "a"}', "exactly one"),
    ],
)
def test_a_body_that_does_not_parse_is_a_400_naming_the_problem(stream_server, body, message):
    connection = http.client.HTTPConnection("127.0.0.1", stream_server.rest_port, timeout=TIMEOUT)
    connection.request("POST", f"/v1/models/{LM}:generate_stream", body)
    reply = connection.getresponse()
    assert reply.status == 400
    assert message in json.loads(reply.read())["error"]
    connection.close()


def test_health_reports_the_generation_service_and_both_clients_see_it(
    stream_server, grpc_client, rest_client
):
    with grpc.insecure_channel(f"127.0.0.1:{stream_server.grpc_port}") as channel:
        health = health_pb2_grpc.HealthStub(channel)
        answer = health.Check(health_pb2.HealthCheckRequest(service="rnnserve.GenerationService"), timeout=10)
    assert answer.status == health_pb2.HealthCheckResponse.SERVING
    assert grpc_client.offers_streaming() and rest_client.offers_streaming()


def test_stock_tf_serving_stubs_see_the_same_prediction_service(stock):
    # The streaming service is added beside PredictionService, which answers as before.
    outputs = predict(stock, contract.SERVING_DEFAULT, {contract.TOKENS: np.array([PROMPT_TOKENS], np.int32)})
    assert set(outputs) == {contract.LOGITS} and outputs[contract.LOGITS].shape[:2] == (1, len(PROMPT_TOKENS))
