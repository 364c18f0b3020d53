"""The streaming wire on its own: the gRPC and REST front ends over a stand-in engine.

What the real engine cannot be made to do on demand — fail halfway through
a stream — is played by `FailingCore`, whose streams hand out two pieces
and then raise a ServingError, as `decoding.Stream` does when a generation
fails midway. Oracles: the interface of `ServerCore.generate_stream`
(`serving/decoding.py`), gRPC's status codes and the event-stream format.
"""

from __future__ import annotations

import http.client
import json
import threading

import pytest
from tensorflow_serving.config import model_server_config_pb2

from rnnserve.serving.client import PredictionClient
from rnnserve.serving.config import ServerOptions
from rnnserve.serving.decoding import Piece
from rnnserve.serving.errors import ServingError
from rnnserve.serving.grpc_api import build_grpc_server
from rnnserve.serving.rest_api import build_rest_server
from rnnserve.serving.rest_client import RestClient, server_sent_events

TIMEOUT = 30


class FailingStream:
    """Two pieces, then INTERNAL "the decoder failed"; records close()."""

    def __init__(self):
        self.end, self.closed, self.cancelled = None, False, False

    def __iter__(self):
        yield Piece("a", [1])
        yield Piece("b", [2])
        raise ServingError("INTERNAL", "the decoder failed")

    def coalesced(self):  # what the wire reads: here, each piece as it comes
        return iter(self)

    def cancel(self):
        self.cancelled = True

    def close(self):
        self.closed = True

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class FailingCore:
    """Stands in for ServerCore: every generate_stream answers a FailingStream."""

    def __init__(self):
        self.streams = []

    def generate_stream(self, model_spec, params, *, entrypoint, timeout_ms=0):
        assert model_spec.name == "lm" and params.tokens == [7] and params.max_new_tokens == 16
        self.streams.append(FailingStream())
        return self.streams[-1]


@pytest.fixture(scope="module")
def fronts():
    """(core, gRPC port, REST port) of both front ends over one FailingCore."""
    core = FailingCore()
    options = ServerOptions(model_server_config_pb2.ModelServerConfig(), port=0, rest_api_port=0)
    grpc_server, grpc_port, _ = build_grpc_server(core, options)
    grpc_server.start()
    rest = build_rest_server(core, options, None)
    thread = threading.Thread(target=rest.serve_forever, daemon=True)
    thread.start()
    yield core, grpc_port, rest.server_address[1]
    rest.close(1)
    grpc_server.stop(None)


def test_an_error_midway_ends_the_grpc_call_with_its_status_after_the_pieces(fronts):
    core, grpc_port, _ = fronts
    with PredictionClient(f"127.0.0.1:{grpc_port}", timeout=TIMEOUT) as client:
        stream = client.generate_stream("lm", tokens=[7])
        pieces = []
        with pytest.raises(ServingError) as raised:
            for piece in stream:
                pieces.append(piece.text)
    assert pieces == ["a", "b"]
    assert (raised.value.code, raised.value.message) == ("INTERNAL", "the decoder failed")
    assert core.streams[-1].closed


def test_an_error_midway_is_an_sse_error_event_and_the_rest_client_raises_it(fronts):
    core, _, rest_port = fronts
    connection = http.client.HTTPConnection("127.0.0.1", rest_port, timeout=TIMEOUT)
    connection.request("POST", "/v1/models/lm:generate_stream", json.dumps({"tokens": [7]}))
    reply = connection.getresponse()
    assert reply.status == 200
    events = [(event, json.loads(data)) for event, data in server_sent_events(reply)]
    connection.close()
    assert events == [
        ("message", {"text": "a", "token_ids": [1]}),
        ("message", {"text": "b", "token_ids": [2]}),
        ("error", {"error": "the decoder failed", "code": "INTERNAL"}),
    ]
    assert core.streams[-1].closed
    stream = RestClient(f"127.0.0.1:{rest_port}", timeout=TIMEOUT).generate_stream("lm", tokens=[7])
    with pytest.raises(ServingError) as raised:
        list(stream)
    assert (raised.value.code, raised.value.message) == ("INTERNAL", "the decoder failed")


def test_server_sent_events_follow_the_event_stream_format():
    lines = [b": a comment\n", b"data: one\r\n", b"data:two\n", b"\n", b"event: done\n", b"data: {}\n", b"\n"]
    lines += [b"event: lost\n"]  # no blank line after it: not dispatched
    assert list(server_sent_events(lines)) == [("message", "one\ntwo"), ("done", "{}")]
