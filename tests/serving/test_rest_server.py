"""The REST server's connections: keep-alive, slow clients, graceful shutdown.

Oracles: HTTP/1.1 itself (RFC 9112: `Connection: close` ends a persistent
connection; a closed connection reads as EOF) as Python's `http.client` and
raw sockets see it. Nothing waits on a clock: each test either
synchronizes on events set by the application callable, or bounds a loop
that would otherwise never end (`LIVENESS` seconds, far above what a
passing run takes) to turn a hang into a failure.
"""

import contextlib
import http.client
import socket
import threading

import pytest
from conftest import LM, start_server

from rnnserve.serving.rest_server import RestServer

LIVENESS = 60  # seconds after which "it never ended" is a failure


@contextlib.contextmanager
def running(app, **limits):
    """A RestServer on a free loopback port, serving `app` until the block ends."""
    server = RestServer(("127.0.0.1", 0), app, num_threads=4, max_request_bytes=1 << 16, **limits)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server
    finally:
        if not server.closing.is_set():
            server.close(grace=0)


def ok_app(method, path, body):
    return 200, "application/json", b"{}"


def in_thread(target, *args) -> threading.Thread:
    thread = threading.Thread(target=target, args=args, daemon=True)
    thread.start()
    return thread


def test_model_server_stop_ends_a_keep_alive_client_that_keeps_sending_requests(exports):
    """The review's case: one HTTPConnection polling model status kept stop(grace=1) busy forever."""
    server = start_server({LM: exports[LM]})
    connection = http.client.HTTPConnection("127.0.0.1", server.rest_port, timeout=LIVENESS)
    answers, first_answer, give_up = [], threading.Event(), threading.Event()

    def poll_status():
        while not give_up.is_set():
            try:
                connection.request("GET", f"/v1/models/{LM}")
                reply = connection.getresponse()
                reply.read()
            except (OSError, http.client.HTTPException) as error:
                answers.append(type(error).__name__)
                return
            answers.append((reply.status, reply.getheader("Connection")))
            first_answer.set()

    client = in_thread(poll_status)
    try:
        assert first_answer.wait(LIVENESS)
        stopper = in_thread(server.stop, 1.0)
        stopper.join(LIVENESS)
        assert not stopper.is_alive(), "stop() did not return"
        client.join(LIVENESS)
        assert not client.is_alive(), "the server never closed the keep-alive connection"
    finally:
        give_up.set()
        server.stop()
    *served, ending = answers
    assert served and all(answer == (200, None) for answer in served[:-1])
    # The connection ended either after an answer marked `Connection: close`
    # (a request was in flight when stop began) or, if it was idle, by EOF.
    assert served[-1] == (200, "close") or ending in (
        "RemoteDisconnected",
        "ConnectionResetError",
        "BrokenPipeError",
    )
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", server.rest_port), timeout=LIVENESS)


def test_a_request_in_flight_when_close_begins_is_answered_with_connection_close():
    entered = threading.Event()
    servers = []

    def app(method, path, body):
        entered.set()
        assert servers[0].closing.wait(LIVENESS)  # answer only once close() has begun
        return 200, "application/json", b'{"answer": 42}'

    with running(app) as server:
        servers.append(server)
        connection = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=LIVENESS)
        connection.request("POST", "/v1/models/m:predict", body=b"{}")
        assert entered.wait(LIVENESS)
        closer = in_thread(server.close, LIVENESS)
        reply = connection.getresponse()
        assert (reply.status, reply.getheader("Connection"), reply.read()) == (
            200,
            "close",
            b'{"answer": 42}',
        )
        closer.join(LIVENESS)
        assert not closer.is_alive()


def test_close_returns_after_grace_and_hangs_up_a_request_that_is_still_running():
    entered, release = threading.Event(), threading.Event()

    def stuck_app(method, path, body):
        entered.set()
        release.wait(LIVENESS)
        return 200, "application/json", b"{}"

    with running(stuck_app) as server:
        connection = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=LIVENESS)
        connection.request("POST", "/v1/models/m:predict", body=b"{}")
        assert entered.wait(LIVENESS)
        closer = in_thread(server.close, 0.2)
        closer.join(LIVENESS)  # `release` is only set below: close() can return only by its grace bound
        assert not closer.is_alive(), "close() waited for the request beyond its grace period"
        with pytest.raises((http.client.RemoteDisconnected, ConnectionResetError)):
            connection.getresponse()
        release.set()


def test_close_ends_an_idle_keep_alive_connection_at_once():
    """Neither the grace period nor the idle timeout (both an hour) is waited for."""
    with running(ok_app, idle_timeout=3600) as server:
        connection = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=LIVENESS)
        connection.request("GET", "/v1/models/m")
        reply = connection.getresponse()
        assert (reply.status, reply.getheader("Connection"), reply.read()) == (200, None, b"{}")
        closer = in_thread(server.close, 3600)
        closer.join(LIVENESS)
        assert not closer.is_alive()
        with pytest.raises((http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)):
            connection.request("GET", "/v1/models/m")
            connection.getresponse()


def test_a_client_trickling_its_request_is_cut_off_at_the_request_deadline():
    """Each byte arrives well within any per-read timeout; the whole request never does."""
    with running(ok_app, idle_timeout=3600, request_timeout=0.5) as server:
        with socket.create_connection(("127.0.0.1", server.server_address[1]), timeout=LIVENESS) as client:
            client.sendall(b"GET /v1/models/m HTTP/1.1\r\nHost: x\r\n")
            client.settimeout(0.05)  # the pace of the trickle
            closed_by_server = False
            for _ in range(LIVENESS * 20):
                try:
                    client.sendall(b"X")  # one more byte of an endless header
                    closed_by_server = client.recv(1) == b""
                except TimeoutError:
                    continue  # nothing to read: the server is still waiting for the request
                except (BrokenPipeError, ConnectionResetError):
                    closed_by_server = True
                if closed_by_server:
                    break
            assert closed_by_server


def test_oversized_and_malformed_bodies_are_refused_and_the_connection_closed():
    with running(ok_app) as server:
        for length, status in ((str(1 << 20), 429), ("-5", 400)):
            connection = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=LIVENESS)
            connection.putrequest("POST", "/v1/models/m:predict")
            connection.putheader("Content-Length", length)
            connection.endheaders()
            reply = connection.getresponse()
            assert (reply.status, reply.getheader("Connection")) == (status, "close")
            connection.close()
