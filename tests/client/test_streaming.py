"""Streaming generation from the client-only install, over gRPC and REST, against `rnnserve serve`.

Oracles: the export's `generate` and `decode` signatures called through the
same client's Predict (the concatenated stream is their tokens and text for
the same prompt, state and seed), and TF Serving's status codes.
"""

from __future__ import annotations

import http.server
import json
import threading
from concurrent import futures

import grpc
import numpy as np
import pytest
from conftest import generate_inputs
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from rnnserve import contract
from rnnserve.serving.client import PredictionClient
from rnnserve.serving.errors import ServingError
from rnnserve.serving.rest_client import RestClient

PROMPT = [5, 9, 12, 1]


def generated(client, model, state_size, max_new_tokens, temperature=0.0, seed=0):
    """(tokens, text) of the `generate` signature (then `decode`) for PROMPT."""
    inputs = generate_inputs([PROMPT], state_size, max_new_tokens, temperature=temperature, seed=seed)
    tokens = client.predict(model, inputs, signature_name=contract.GENERATE)[contract.TOKENS]  # (1, N)
    text = client.predict(model, {contract.TOKENS: tokens}, signature_name=contract.DECODE)[contract.TEXT]
    text = text[0]
    return tokens[0].tolist(), text.decode("utf-8") if isinstance(text, bytes) else text


def test_the_server_offers_streaming(client):
    assert client.offers_streaming() is True
    assert client.offers_streaming() is True  # cached


@pytest.mark.parametrize("temperature, seed", [(0.0, 0), (0.8, 21)])
def test_the_stream_is_what_generate_answers(client, model, state_size, temperature, seed):
    tokens, text = generated(client, model, state_size, 12, temperature, seed)
    with client.generate_stream(
        model, tokens=PROMPT, max_new_tokens=12, temperature=temperature, seed=seed
    ) as stream:
        pieces = list(stream)
    assert [token for piece in pieces for token in piece.token_ids] == tokens
    assert "".join(piece.text for piece in pieces) == text
    end = stream.end
    assert (end.finish_reason, end.generated_tokens, end.last_token) == ("length", 12, tokens[-1])
    assert end.model == model and end.version == 1
    assert end.state.dtype == np.float32 and end.state.shape == (state_size,)


def test_a_stop_string_ends_the_stream_without_sending_it(client, model, state_size):
    _, text = generated(client, model, state_size, 30, 0.9, 4)
    stop = text[6:8]
    with client.generate_stream(
        model, tokens=PROMPT, max_new_tokens=30, temperature=0.9, seed=4, stop=stop
    ) as stream:
        streamed = "".join(piece.text for piece in stream)
    assert streamed == text[: text.find(stop)]
    assert stream.end.finish_reason == "stop"


def test_cancel_ends_the_iteration_without_an_error(client, model):
    stream = client.generate_stream(model, tokens=PROMPT, max_new_tokens=60)
    count = 0
    for _ in stream:
        count += 1
        if count == 2:
            stream.cancel()
    assert count == 2 and stream.end is None


def test_an_unknown_model_fails_before_the_stream(client):
    with pytest.raises(ServingError) as raised:
        list(client.generate_stream("no-such-model", tokens=PROMPT))
    assert raised.value.code == "NOT_FOUND"


def test_bad_arguments_are_refused_before_anything_is_sent(client, model):
    with pytest.raises(ValueError, match="exactly one"):
        client.generate_stream(model, prompt="a", tokens=PROMPT)
    with pytest.raises(ValueError, match="max_new_tokens"):
        client.generate_stream(model, tokens=PROMPT, max_new_tokens=0)


# --- a server that does not stream (TF Serving's answers) ------------------------------


def test_a_grpc_server_without_the_generation_service_does_not_offer_streaming():
    for with_health in (True, False):  # TF Serving's health service (its names only), or none at all
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        if with_health:
            servicer = health.HealthServicer()
            for name in ("", "tensorflow.serving.PredictionService"):
                servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
            health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        try:
            with PredictionClient(f"127.0.0.1:{port}", timeout=10) as client:
                assert client.offers_streaming() is False
        finally:
            server.stop(None)


def test_a_rest_server_answering_malformed_request_does_not_offer_streaming():
    class TfServingLike(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's naming
            self.rfile.read(int(self.headers["Content-Length"]))
            body = json.dumps({"error": f"Malformed request: POST {self.path}"}).encode()
            self.send_response(400)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), TfServingLike)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        assert RestClient(f"127.0.0.1:{server.server_address[1]}", timeout=10).offers_streaming() is False
    finally:
        server.shutdown()
        server.server_close()


def test_a_finished_stream_iterates_again_as_empty(client, model):
    stream = client.generate_stream(model, tokens=PROMPT, max_new_tokens=3)
    assert len(list(stream)) == 3
    assert list(stream) == [] and stream.end.generated_tokens == 3
