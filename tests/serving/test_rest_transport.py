"""The REST API as HTTP clients use it: chunked and gzip bodies, CORS, JSON for every answer.

Oracles: HTTP/1.1 (RFC 9112) as raw bytes on one socket, Python's gzip,
and TF Serving's HTTP server (`http_server.cc`, `evhttp_request.cc`,
`http_rest_api_util.cc`): bodies are de-chunked and gunzipped before the
handler sees them, OPTIONS is a CORS preflight ("Origin header is missing in
CORS preflight" without an http(s) Origin), CORS headers are
`Access-Control-Allow-Origin: *`, `...-Methods: POST, GET`,
`...-Headers: Content-Type`, and rapidjson's parse errors are the messages.
"""

import gzip
import http.client
import json
import socket

import pytest
from conftest import HALF, LM, start_server

PREDICT = f"/v1/models/{HALF}:predict".encode()
QUICKSTART = b'{"instances": [1.0, 2.0, 5.0]}'
ANSWER = {"predictions": [2.5, 3.0, 4.5]}


def exchange(port: int, payload: bytes) -> list[tuple[int, dict, bytes]]:
    """Sends raw bytes on one connection; returns every (status, headers, body) answered on it."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as connection:
        try:
            connection.sendall(payload)
            connection.shutdown(socket.SHUT_WR)
        except OSError:  # the server answered and closed before reading everything
            pass
        data = b""
        while chunk := connection.recv(65536):
            data += chunk
    replies = []
    while data:
        head, _, data = data.partition(b"\r\n\r\n")
        status_line, *lines = head.decode("latin-1").split("\r\n")
        headers = {key.lower(): value.strip() for key, _, value in (line.partition(":") for line in lines)}
        length = int(headers.get("content-length", 0))
        replies.append((int(status_line.split()[1]), headers, data[:length]))
        data = data[length:]
    return replies


def post(path: bytes, body: bytes, *headers: bytes) -> bytes:
    lines = [b"POST " + path + b" HTTP/1.1", b"Host: 127.0.0.1", *headers]
    if not any(h.lower().startswith(b"transfer-encoding") for h in headers):
        lines.append(b"Content-Length: %d" % len(body))
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def chunked(body: bytes, size: int = 7) -> bytes:
    pieces = [body[i : i + size] for i in range(0, len(body), size)]
    return b"".join(b"%x;name=value\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\nX-Trailer: 1\r\n\r\n"


def test_a_chunked_body_is_read_whole_and_the_next_request_on_the_connection_is_answered(tf_server):
    replies = exchange(
        tf_server.rest_port,
        post(PREDICT, chunked(QUICKSTART), b"Transfer-Encoding: chunked") + post(PREDICT, QUICKSTART),
    )
    assert [(status, json.loads(body)) for status, _, body in replies] == [(200, ANSWER), (200, ANSWER)]


def test_a_gzip_body_is_decompressed(tf_server):
    ((status, _, body),) = exchange(
        tf_server.rest_port, post(PREDICT, gzip.compress(QUICKSTART), b"Content-Encoding: gzip")
    )
    assert (status, json.loads(body)) == (200, ANSWER)


def test_a_chunked_gzip_body_is_de_chunked_then_decompressed(tf_server):
    payload = post(
        PREDICT, chunked(gzip.compress(QUICKSTART)), b"Transfer-Encoding: chunked", b"Content-Encoding: gzip"
    )
    ((status, _, body),) = exchange(tf_server.rest_port, payload)
    assert (status, json.loads(body)) == (200, ANSWER)


@pytest.fixture(scope="module")
def small_server(exports):
    running = start_server({LM: exports[LM]}, max_request_bytes=4096)
    yield running
    running.stop(grace=1)


def test_a_gzip_bomb_under_the_cap_on_the_wire_is_429_once_decompressed_past_it(small_server):
    bomb = gzip.compress(b" " * (1 << 20))  # 1 MiB inflated from about 1 KiB sent
    assert len(bomb) < 4096
    ((status, headers, body),) = exchange(
        small_server.rest_port, post(f"/v1/models/{LM}:predict".encode(), bomb, b"Content-Encoding: gzip")
    )
    assert status == 429
    assert json.loads(body) == {
        "error": "Decompressed request body is larger than the limit of 4096 bytes (--max_request_bytes)."
    }
    assert headers["connection"] == "close"


def test_a_chunked_body_over_the_cap_is_429_without_reading_it_all(small_server):
    payload = post(
        f"/v1/models/{LM}:predict".encode(), chunked(b"[" * 8192, 1024), b"Transfer-Encoding: chunked"
    )
    ((status, _, body),) = exchange(small_server.rest_port, payload)
    assert (
        status == 429 and "Request body is larger than the limit of 4096 bytes" in json.loads(body)["error"]
    )


def options(port: int, *headers: bytes) -> tuple[int, dict, bytes]:
    request = b"\r\n".join([b"OPTIONS " + PREDICT + b" HTTP/1.1", b"Host: 127.0.0.1", *headers]) + b"\r\n\r\n"
    (reply,) = exchange(port, request)
    return reply


CORS = {
    "access-control-allow-origin": "*",
    "access-control-allow-methods": "POST, GET",
    "access-control-allow-headers": "Content-Type",
}


def test_a_cors_preflight_with_an_origin_is_200_with_the_cors_headers(tf_server):
    status, headers, body = options(
        tf_server.rest_port, b"Origin: https://app.example", b"Access-Control-Request-Method: POST"
    )
    assert status == 200 and body == b""
    assert {key: headers[key] for key in CORS} == CORS


def test_a_preflight_without_an_origin_is_failed_precondition(tf_server):
    status, headers, body = options(tf_server.rest_port)
    assert (status, json.loads(body)) == (400, {"error": "Origin header is missing in CORS preflight"})
    assert headers["access-control-allow-origin"] == "*"


def test_every_answer_carries_the_cors_headers_when_cors_is_on_and_none_when_off(tf_server, server):
    ((_, headers, _),) = exchange(tf_server.rest_port, post(PREDICT, QUICKSTART))
    assert {key: headers[key] for key in CORS} == CORS
    ((_, headers, _),) = exchange(server.rest_port, post(f"/v1/models/{LM}:predict".encode(), b"{}"))
    assert not set(CORS) & set(headers)


@pytest.mark.parametrize(
    "request_bytes, status, message",
    [
        (b"TRACE /v1/models/x HTTP/1.1\r\nHost: a\r\n\r\n", 501, "Unsupported method ('TRACE')"),
        (
            b"PUT /v1/models/x HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n",
            400,
            "Malformed request: PUT /v1/models/x",
        ),
        (b"GET /index.html HTTP/1.1\r\nHost: a\r\n\r\n", 404, "Not Found: /index.html"),
        (b"GET /v1/models HTTP/x.y\r\n\r\n", 400, "Bad request version ('HTTP/x.y')"),
    ],
    ids=[
        "unsupported method",
        "method TF Serving's handler rejects",
        "path outside /v1/",
        "bad request line",
    ],
)
def test_every_error_is_a_json_body_with_tf_servings_status(tf_server, request_bytes, status, message):
    ((answered, headers, body),) = exchange(tf_server.rest_port, request_bytes)
    assert headers["content-type"] == "application/json"
    assert (answered, json.loads(body)) == (status, {"error": message})


@pytest.mark.parametrize(
    "body, message",
    [
        (
            QUICKSTART + b" x",
            "JSON Parse error: The document root must not be followed by other values. at offset: 31",
        ),
        (b"   ", "JSON Parse error: The document is empty. at offset: 3"),
        (b'{"instances": [1.0,]}', "JSON Parse error: Invalid value. at offset: 19"),
    ],
    ids=["trailing data", "only whitespace", "invalid value"],
)
def test_json_parse_errors_read_as_rapidjsons(tf_server, body, message):
    connection = http.client.HTTPConnection("127.0.0.1", tf_server.rest_port, timeout=30)
    connection.request("POST", PREDICT.decode(), body=body)
    reply = connection.getresponse()
    assert (reply.status, json.loads(reply.read())) == (400, {"error": message})
    connection.close()
