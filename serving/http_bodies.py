"""Reading an HTTP request body as TF Serving's HTTP server does: chunked, gzip, capped.

TF Serving's server (libevent's evhttp) de-chunks `Transfer-Encoding:
chunked` bodies and, when `Content-Encoding` contains "gzip", gunzips the
body before the handler sees it (`util/net_http/server/internal/
evhttp_request.cc`). `read_body` does the same, with one cap applied twice:
to the body as sent and to the body once decompressed, so a small
"gzip bomb" cannot make the server allocate more than the cap. Memory
stays bounded by the cap whatever the client sends.

Every failure is a `BodyError(status, message)`; the connection is then
closed, because the rest of the body was not read.

Example:

>>> import io, email.message
>>> headers = email.message.Message()
>>> headers["Transfer-Encoding"] = "chunked"
>>> read_body(io.BytesIO(b"4\\r\\n{\\"a\\"\\r\\n3\\r\\n: 1\\r\\n1\\r\\n}\\r\\n0\\r\\n\\r\\n"), headers, limit=1024)
b'{"a": 1}'
"""

from __future__ import annotations

import zlib

MAX_LINE = 4096  # bytes of a chunk-size line (size and extensions) or a trailer line
MAX_TRAILERS = 64  # trailer fields after the last chunk


class BodyError(Exception):
    """A request body that cannot be read: the HTTP status and the error message to answer."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


def _too_large(what: str, limit: int) -> BodyError:
    return BodyError(429, f"{what} is larger than the limit of {limit} bytes (--max_request_bytes).")


def _chunk_size(line: bytes) -> int:
    if len(line) > MAX_LINE or not line.endswith(b"\n"):
        raise BodyError(400, "Malformed chunk size line in a chunked request body.")
    text = line.split(b";", 1)[0].strip()  # chunk extensions are ignored
    if not text or not all(c in b"0123456789abcdefABCDEF" for c in text):
        raise BodyError(400, "Malformed chunk size line in a chunked request body.")
    return int(text, 16)


def read_chunked(rfile, limit: int) -> bytes:
    """A `Transfer-Encoding: chunked` body (RFC 9112 §7.1), at most `limit` bytes."""
    body = bytearray()
    while True:
        line = rfile.readline(MAX_LINE + 1)
        if not line:
            raise BodyError(400, "The chunked request body ended early.")
        size = _chunk_size(line)
        if size == 0:
            break
        if len(body) + size > limit:
            raise _too_large("Request body", limit)
        data = rfile.read(size)
        if len(data) < size:
            raise BodyError(400, "The chunked request body ended early.")
        body += data
        if rfile.read(2) not in (b"\r\n", b"\n"):
            raise BodyError(400, "Malformed chunk in a chunked request body: no CRLF after its data.")
    for _ in range(MAX_TRAILERS):  # the trailer section is read and ignored
        if rfile.readline(MAX_LINE + 1) in (b"\r\n", b"\n", b""):
            return bytes(body)
    raise BodyError(400, f"A chunked request body has more than {MAX_TRAILERS} trailer fields.")


def gunzip(data: bytes, limit: int) -> bytes:
    """Decompresses a gzip body (every member), never holding more than `limit` bytes of output."""
    out = bytearray()
    rest = data
    while rest:
        inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        pending = rest
        while pending and not inflater.eof:
            out += inflater.decompress(pending, limit - len(out) + 1)  # +1 tells "over the cap"
            if len(out) > limit:
                raise _too_large("Decompressed request body", limit)
            pending = inflater.unconsumed_tail
        if not inflater.eof:
            raise BodyError(400, "Malformed gzip request body.")
        rest = inflater.unused_data
        if not rest.strip(b"\x00"):  # zero padding after the last member, as gzip(1) allows
            break
    return bytes(out)


def read_body(rfile, headers, limit: int) -> bytes:
    """The whole request body, de-chunked and gunzipped, at most `limit` bytes at every stage.

    Args:
        rfile: the connection's buffered reader, positioned after the headers.
        headers: the request headers (an `email.message.Message`).
        limit: the largest body accepted, in bytes, before and after decompression.

    Raises:
        BodyError: 429 over the cap, 400 malformed, 501 an unknown transfer coding.
    """
    transfer = (headers.get("Transfer-Encoding") or "").lower()
    if transfer:
        codings = [coding.strip() for coding in transfer.split(",") if coding.strip()]
        if codings[-1:] != ["chunked"] or any(coding not in ("chunked", "identity") for coding in codings):
            raise BodyError(
                501, f"Transfer-Encoding {transfer} is not supported; send chunked or a Content-Length."
            )
        body = read_chunked(rfile, limit)  # with Content-Length too, chunked wins (RFC 9112 §6.3)
    else:
        try:
            length = int(headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0:
            raise BodyError(400, "Malformed Content-Length header")
        if length > limit:
            raise _too_large(f"Request body of {length} bytes", limit)
        body = rfile.read(length) if length else b""
        if len(body) < length:
            raise BodyError(400, "The request body ended early.")
    if "gzip" in (headers.get("Content-Encoding") or "").lower():  # TF Serving: StrContains "gzip"
        body = gunzip(body, limit)
    return body
