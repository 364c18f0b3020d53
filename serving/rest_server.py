"""The HTTP/1.1 server under the REST API: workers, keep-alive, deadlines, graceful close.

`RestServer` accepts connections and serves each on a pool of
`num_threads` workers; `app(method, path, body)` turns one request into
`(HTTP status, Content-Type, body bytes)` (`serving.rest_api` builds it).
A body that is an iterator of bytes instead (Server-Sent Events) is streamed:
each item is sent and flushed as it comes (chunked transfer encoding, or
close-delimited for an HTTP/1.0 client), and a client that hangs up (seen
before each item, or as a failed write) ends it: the iterator is closed,
which cancels the work behind it. Such a reply holds its worker until it ends.
Bodies are read as TF Serving's server reads them (`serving.http_bodies`:
chunked, gzip). Every answer is JSON, http.server's own errors included;
OPTIONS is a CORS preflight, and with `cors` every answer carries TF
Serving's CORS headers.
The limits keep a client from holding a worker:

| what                                  | limit                                  | then |
|---------------------------------------|----------------------------------------|------|
| a keep-alive connection waiting for its next request | `idle_timeout` (10 s)   | closed |
| one request (line, headers, body) from its first byte | `request_timeout` (60 s) | closed: a per-read timeout alone would let a client that trickles bytes ("slowloris") hold a worker forever |
| a request body (chunked or not), and again once gunzipped | `max_request_bytes`  | 429 RESOURCE_EXHAUSTED, read no further |

`close(grace)` is the graceful shutdown: the listening socket closes, idle
keep-alive connections are closed at once, requests in flight are answered
with `Connection: close`, and whatever is still open after `grace` seconds
is hung up, so a keep-alive client can never delay shutdown.

Example:

```python
server = RestServer(("127.0.0.1", 0), app, num_threads=4, max_request_bytes=1 << 20)
threading.Thread(target=server.serve_forever, daemon=True).start()
server.server_address[1]        # the bound port
# 43127
server.close(grace=5)
```
"""

from __future__ import annotations

import http.server
import io
import logging
import select
import socket
import threading
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor

from rnnserve.serving.http_bodies import BodyError, read_body
from rnnserve.serving.json_tensors import error_to_json

log = logging.getLogger("rnnserve.serving")

IDLE_TIMEOUT = 10.0  # seconds a keep-alive connection may wait for its next request
REQUEST_TIMEOUT = 60.0  # seconds a whole request may take to arrive, from its first byte
WRITE_TIMEOUT = 10.0  # seconds a reply may take to be sent
LINGER_SECONDS, LINGER_BYTES = 1.0, 1 << 20  # what is drained of a refused body before closing
# TF Serving's AddCORSHeaders (http_rest_api_util.cc), on every answer with --rest_api_enable_cors_support.
CORS_HEADERS = (
    ("Access-Control-Allow-Origin", "*"),
    ("Access-Control-Allow-Methods", "POST, GET"),
    ("Access-Control-Allow-Headers", "Content-Type"),
)


class _DeadlineReader(io.RawIOBase):
    """Reads from a socket, every read ending by one shared `deadline` (time.monotonic())."""

    def __init__(self, sock: socket.socket):
        self._sock = sock
        self.deadline = 0.0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("the request did not arrive in time")
        self._sock.settimeout(remaining)
        try:
            return self._sock.recv_into(buffer)
        finally:
            self._sock.settimeout(WRITE_TIMEOUT)


def _hang_up(connections) -> None:
    """Ends connections under their workers: blocked reads return EOF, writes fail."""
    for connection in connections:
        try:
            connection.shutdown(socket.SHUT_RDWR)
        except OSError:  # already closed by the client
            pass


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "rnnserve"
    timeout = WRITE_TIMEOUT  # the socket's own timeout bounds writes; reads go through _DeadlineReader

    def setup(self):
        super().setup()
        self.rfile.close()  # the plain socket reader; reads need deadlines
        self._reader = _DeadlineReader(self.connection)
        self.rfile = io.BufferedReader(self._reader)
        # Answers go out as one write; without this a small reply could still
        # wait for the client's delayed ACK of the previous one (Nagle, ~40 ms).
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format, *args):  # noqa: A002 - BaseHTTPRequestHandler's name
        log.debug("REST %s", format % args)

    def handle_one_request(self):
        """Waits up to idle_timeout for a request, then gives it request_timeout to arrive."""
        self._reader.deadline = time.monotonic() + self.server.idle_timeout
        try:
            arrived = self.rfile.peek(1)
        except OSError:  # idle too long, or hung up by close()
            arrived = b""
        if not arrived or not self.server.request_started(self.connection):
            self.close_connection = True
            return
        self._reader.deadline = time.monotonic() + self.server.request_timeout
        try:
            super().handle_one_request()  # a read past the deadline ends the connection there
        finally:
            if not self.server.request_finished(self.connection):
                self.close_connection = True

    def _reply(self, status: int, content_type: str, body) -> None:
        if not isinstance(body, bytes):
            return self._reply_stream(status, content_type, body)
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self._common_headers()
        self._headers_buffer.append(b"\r\n")  # end_headers(), with the body in the same write
        if self.command != "HEAD":
            self._headers_buffer.append(body)
        self.flush_headers()

    def _common_headers(self) -> None:
        if self.server.cors:
            for name, value in CORS_HEADERS:
                self.send_header(name, value)
        if self.close_connection or self.server.closing.is_set():
            self.send_header("Connection", "close")  # also sets close_connection

    def _reply_stream(self, status: int, content_type: str, items) -> None:
        """Sends `items` (an iterator of bytes) one by one as they come; closes it however it ends."""
        try:
            chunked = self.request_version == "HTTP/1.1"
            if not chunked:
                self.close_connection = True  # the end of the body is the end of the connection
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Cache-Control", "no-cache")
            if chunked:
                self.send_header("Transfer-Encoding", "chunked")
            self._common_headers()
            self.end_headers()
            for item in items:
                if self._client_gone():
                    self.close_connection = True
                    return
                self.wfile.write(b"%x\r\n%s\r\n" % (len(item), item) if chunked else item)
            if chunked:
                self.wfile.write(b"0\r\n\r\n")
        except OSError:  # the client hung up, or stopped reading for WRITE_TIMEOUT
            self.close_connection = True
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()

    def _client_gone(self) -> bool:
        """True when the client has closed its end (EOF or reset waiting on the socket)."""
        poller = select.poll()  # not select.select: it fails on descriptors past FD_SETSIZE
        poller.register(self.connection, select.POLLIN)
        if not poller.poll(0):
            return False
        try:
            return not self.connection.recv(1, socket.MSG_PEEK)
        except BlockingIOError:
            return False
        except OSError:
            return True

    def _error(self, status: int, message: str) -> None:
        self._reply(status, "application/json", error_to_json(message).encode())

    def send_error(self, code, message=None, explain=None):
        """http.server's own errors (bad request line, unknown method, headers too long) as JSON."""
        self.close_connection = True
        if self.request_version == "HTTP/0.9":  # the request line did not parse: answer HTTP/1.1 anyway
            self.request_version = "HTTP/1.1"
        self._error(code, message or http.HTTPStatus(code).phrase)

    def _serve(self, method: str) -> None:
        try:
            body = read_body(self.rfile, self.headers, self.server.max_request_bytes)
        except BodyError as error:
            self.close_connection = True  # the rest of the body was not read
            self._error(error.status, error.message)
            return self._linger()
        except OSError:  # the client hung up, or the request took too long to arrive
            self.close_connection = True
            return
        self._reply(*self.server.app(method, urllib.parse.urlsplit(self.path).path, body))

    def _linger(self) -> None:
        """Reads (and drops) what the client still sends, briefly, so closing does not reset the
        connection before the client has read the error answer."""
        self.wfile.flush()
        self._reader.deadline = time.monotonic() + LINGER_SECONDS
        try:
            for _ in range(LINGER_BYTES // 65536):
                if not self.rfile.read1(65536):
                    break
        except OSError:
            pass

    def do_OPTIONS(self):  # noqa: N802 - http.server's naming
        """A CORS preflight: 200 when Origin is http(s)://..., else FAILED_PRECONDITION (400)."""
        try:
            read_body(self.rfile, self.headers, self.server.max_request_bytes)
        except (BodyError, OSError):
            self.close_connection = True
        origin = self.headers.get("Origin") or ""
        if origin.startswith(("http://", "https://")):
            return self._reply(200, "application/json", b"")
        self._error(400, "Origin header is missing in CORS preflight")

    def do_GET(self):  # noqa: N802
        self._serve("GET")

    def do_POST(self):  # noqa: N802
        self._serve("POST")

    def do_PUT(self):  # noqa: N802
        self._serve("PUT")

    def do_DELETE(self):  # noqa: N802
        self._serve("DELETE")

    def do_PATCH(self):  # noqa: N802
        self._serve("PATCH")

    def do_HEAD(self):  # noqa: N802
        self._serve("HEAD")


class RestServer(http.server.HTTPServer):
    """A bound HTTP server whose connections run on a bounded pool (see the module docstring).

    Args:
        address: (host, port) to bind; port 0 picks a free one.
        app: `app(method, path, body) -> (status, content_type, body)`.
        num_threads: worker threads (connections served at once).
        max_request_bytes: the largest request body read, also once decompressed.
        cors: add TF Serving's CORS headers to every answer.
        idle_timeout / request_timeout: seconds (see the module docstring).

    Attributes:
        closing: set once `close()` has begun.
    """

    allow_reuse_address = True

    def __init__(
        self,
        address,
        app,
        *,
        num_threads: int,
        max_request_bytes: int,
        cors: bool = False,
        idle_timeout: float = IDLE_TIMEOUT,
        request_timeout: float = REQUEST_TIMEOUT,
    ):
        self.app = app
        self.max_request_bytes = max_request_bytes
        self.cors = cors
        self.idle_timeout, self.request_timeout = idle_timeout, request_timeout
        self.closing = threading.Event()
        self._connections: dict[socket.socket, bool] = {}  # open connection -> a request is in flight
        self._changed = threading.Condition()
        self._pool = ThreadPoolExecutor(max_workers=num_threads, thread_name_prefix="rnnserve-rest")
        super().__init__(address, _Handler)

    # -- connections: accepted on the serve_forever thread, served on the pool --
    def process_request(self, request, client_address):
        with self._changed:
            accepted = not self.closing.is_set()
            if accepted:
                self._connections[request] = False
        if accepted:
            self._pool.submit(self._serve_connection, request, client_address)
        else:
            self.shutdown_request(request)

    def _serve_connection(self, request, client_address):
        try:
            self.finish_request(request, client_address)
        except Exception:
            self.handle_error(request, client_address)
        finally:
            self.shutdown_request(request)

    def shutdown_request(self, request):
        with self._changed:
            self._connections.pop(request, None)
            self._changed.notify_all()
        super().shutdown_request(request)

    def handle_error(self, request, client_address):
        # Requests' own failures are answered by the app; what gets here is a
        # connection failing (reset by the client, hung up by close()).
        log.debug("REST connection from %s ended with an error", client_address, exc_info=True)

    def request_started(self, connection) -> bool:
        """Marks a request in flight on `connection`; False once closing (the connection then ends)."""
        with self._changed:
            if self.closing.is_set():
                return False
            self._connections[connection] = True
            return True

    def request_finished(self, connection) -> bool:
        """Marks `connection` idle again; False once closing (the connection then ends)."""
        with self._changed:
            self._connections[connection] = False
            self._changed.notify_all()
            return not self.closing.is_set()

    # -- shutdown ----------------------------------------------------------
    def close(self, grace: float) -> None:
        """Stops accepting, lets requests in flight finish for up to `grace` s, then hangs up the rest.

        Must be called while `serve_forever()` runs on another thread.
        """
        deadline = time.monotonic() + grace
        with self._changed:
            self.closing.set()
            idle = [connection for connection, busy in self._connections.items() if not busy]
        _hang_up(idle)
        self.shutdown()  # serve_forever() returns: nothing more is accepted
        self.server_close()  # new connections are refused
        with self._changed:
            self._changed.wait_for(
                lambda: not self._connections, timeout=max(0.0, deadline - time.monotonic())
            )
            left = list(self._connections)
        if left:
            log.warning(
                "Closing %d REST connection(s) still busy after the %g s grace period", len(left), grace
            )
        _hang_up(left)
        self._pool.shutdown(wait=False)  # workers end with their connections
