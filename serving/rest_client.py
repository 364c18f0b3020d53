"""`RestClient`: the same methods as `PredictionClient`, over TF Serving's REST API.

Predict requests use the columnar format (`{"inputs": {...}}`), which keeps
every shape exactly; bytes that are not UTF-8 travel as `{"b64": ...}`.
The reply's JSON is turned back into arrays of the signature's dtypes,
which the client reads once per model version from `/metadata`. Errors
raise `ServingError`; since REST only carries the HTTP status, the code is
the most likely one for it (400 -> INVALID_ARGUMENT, 404 -> NOT_FOUND, ...),
and `.message` is the server's `error` text.

Differences a caller may notice: TF Serving's REST API has no output filter
(it is applied here, after the reply) and no config reload (calling
`reload_config` raises UNIMPLEMENTED).

`generate_stream` reads the embedded server's `:generate_stream` route
(Server-Sent Events, parsed here over `http.client`); `offers_streaming()`
says whether the server has it.

Typical use (server with REST on 127.0.0.1:8501)::

    client = RestClient("http://127.0.0.1:8501", timeout=10)
    client.predict("charlm", {"tokens": np.array([[5, 6, 7]], np.int32)})["logits"]
    for piece in client.generate_stream("charlm", prompt="the ", max_new_tokens=20):
        print(piece.text, end="", flush=True)
"""

from __future__ import annotations

import base64
import http.client
import json
import socket
import urllib.error
import urllib.parse
import urllib.request

import numpy as np
from google.protobuf import json_format

from rnnserve import contract
from rnnserve.serving import protos
from rnnserve.serving.client_types import (
    GenerationStream,
    ModelMetadata,
    Outputs,
    StreamPiece,
    generate_request,
    statuses_from_response,
    summary_from_response,
)
from rnnserve.serving.errors import CODE_NUMBERS, HTTP_STATUS, ServingError
from rnnserve.serving.json_tensors import json_to_array

# HTTP status -> the canonical code a REST client reports (first code with that status).
CODE_FOR_HTTP = {}
for _code, _status in HTTP_STATUS.items():
    CODE_FOR_HTTP.setdefault(_status, _code)


# A model name no server has: offers_streaming() asks for it (see there).
_PROBE_MODEL = "rnnserve-streaming-probe"


class NotHttpError(ServingError):
    """The target does not answer HTTP/1.x, e.g. it is a gRPC port (use `PredictionClient` or the REST port)."""


def _error_message(text: str, reason: str) -> str:
    """The `error` of a JSON error body, else the body (or the HTTP reason)."""
    try:
        return json.loads(text)["error"]
    except (ValueError, KeyError, TypeError):
        return text or reason


def server_sent_events(lines):
    """(event, data) of each Server-Sent Event in `lines` (bytes lines of a text/event-stream body).

    The event is "message" unless named; several `data:` lines join with
    newlines; `:` comments and other fields are skipped (the HTML standard's
    event-stream interpretation).
    """
    event, data = "", []
    for raw in lines:
        line = raw.decode("utf-8").rstrip("\r\n")
        if not line:
            if data:
                yield event or "message", "\n".join(data)
            event, data = "", []
            continue
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "event":
            event = value
        elif name == "data":
            data.append(value)


def _json_value(array: np.ndarray):
    if array.dtype.kind in "OSU":

        def text(item):
            data = item.encode("utf-8") if isinstance(item, str) else bytes(item)
            try:
                return data.decode("utf-8")
            except UnicodeDecodeError:
                return {"b64": base64.b64encode(data).decode("ascii")}

        flat = [text(item) for item in array.ravel()]
        return np.array(flat + [None], dtype=object)[:-1].reshape(array.shape).tolist()
    return array.tolist()


class RestClient:
    """A REST client for TF Serving's /v1/models API.

    Args:
        base_url: "http://host:port" (or "host:port").
        timeout: seconds per request (default 30).

    Example:

    ```python
    RestClient("127.0.0.1:8501").status("charlm")[0].state
    # 'AVAILABLE'
    ```
    """

    def __init__(self, base_url: str, timeout: float = 30.0):
        if "://" not in base_url:
            base_url = "http://" + base_url
        self.base_url, self.timeout = base_url.rstrip("/"), timeout
        self._metadata: dict = {}
        self._offers_streaming: bool | None = None

    def _path(self, model: str, version=None, version_label=None) -> str:
        if version is not None and version_label is not None:
            raise ValueError(
                f"Received both version={version} and version_label={version_label!r}; pass at most one."
            )
        path = f"/v1/models/{urllib.parse.quote(model, safe='')}"
        if version is not None:
            path += f"/versions/{int(version)}"
        elif version_label is not None:
            path += f"/labels/{urllib.parse.quote(version_label, safe='')}"
        return path

    def _request(self, path: str, body: dict | None = None) -> dict:
        data = None if body is None else json.dumps(body).encode("utf-8")
        request = urllib.request.Request(
            self.base_url + path, data=data, method="GET" if data is None else "POST"
        )
        request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as reply:
                return json.loads(reply.read())
        except urllib.error.HTTPError as error:
            message = _error_message(error.read().decode("utf-8", errors="replace"), error.reason)
            raise ServingError(CODE_FOR_HTTP.get(error.code, "UNKNOWN"), message) from None
        except http.client.HTTPException:
            raise NotHttpError(
                "UNAVAILABLE", f"{self.base_url} does not answer HTTP/1.1 (a gRPC port?); use the REST port"
            ) from None
        except (urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", error)
            raise ServingError("UNAVAILABLE", f"cannot reach {self.base_url}: {reason}") from None

    def metadata(
        self, model: str, version: int | None = None, version_label: str | None = None
    ) -> ModelMetadata:
        """GET .../metadata, parsed into the same ModelMetadata the gRPC client returns."""
        doc = self._request(self._path(model, version, version_label) + "/metadata")
        spec = json_format.ParseDict(doc["model_spec"], protos.ModelSpec(), descriptor_pool=protos.POOL)
        signature_map = json_format.ParseDict(
            doc["metadata"]["signature_def"], protos.SignatureDefMap(), descriptor_pool=protos.POOL
        )
        return ModelMetadata.from_protos(spec, signature_map)

    def status(self, model: str, version: int | None = None, version_label: str | None = None) -> list:
        """GET /v1/models/NAME[...]: a VersionStatus per known version."""
        doc = self._request(self._path(model, version, version_label))
        return statuses_from_response(
            json_format.ParseDict(doc, protos.GetModelStatusResponse(), descriptor_pool=protos.POOL)
        )

    def _signature(self, model, version, version_label, signature_name):
        key = (model, version, version_label)
        if key not in self._metadata or signature_name not in self._metadata[key].signatures:
            self._metadata[key] = self.metadata(model, version, version_label)
        metadata = self._metadata[key]
        if signature_name not in metadata.signatures:
            raise ServingError(
                "INVALID_ARGUMENT", f'Serving signature name: "{signature_name}" not found in signature def'
            )
        return metadata.signatures[signature_name]

    def predict(
        self,
        model: str,
        inputs: dict,
        signature_name: str = "serving_default",
        output_filter=(),
        version: int | None = None,
        version_label: str | None = None,
    ) -> Outputs:
        """POST ...:predict in columnar format; same arguments and result as PredictionClient.predict."""
        signature = self._signature(model, version, version_label, signature_name)
        body = {
            "signature_name": signature_name,
            "inputs": {alias: _json_value(np.asarray(value)) for alias, value in inputs.items()},
        }
        doc = self._request(self._path(model, version, version_label) + ":predict", body)
        names = sorted(signature.outputs)
        values = doc["outputs"] if len(names) > 1 else {names[0]: doc["outputs"]}
        # A server-side sequence's answer has sequence_id and no state (unless asked for).
        dtypes = {name: info.dtype for name, info in signature.outputs.items()}
        dtypes[contract.SEQUENCE_ID] = np.dtype(np.uint64)
        arrays = {
            name: json_to_array(value, dtypes[name]) for name, value in values.items() if name in dtypes
        }
        for name in output_filter:
            if name not in arrays:
                raise ServingError.unknown_output_alias(name, arrays)
        if output_filter:
            arrays = {name: arrays[name] for name in output_filter}
        return Outputs(arrays, model, version, signature_name)

    def reload_config(self, config) -> None:
        """TF Serving's REST API has no config reload; use PredictionClient.reload_config."""
        raise ServingError(
            "UNIMPLEMENTED", "TF Serving's REST API has no config reload; use the gRPC client."
        )

    def _open_stream(self, path: str, body: bytes):
        """POSTs `body` to `path`; returns (status, content type, the response, its socket)."""
        url = urllib.parse.urlsplit(self.base_url)
        connection_class = (
            http.client.HTTPSConnection if url.scheme == "https" else http.client.HTTPConnection
        )
        connection = connection_class(url.hostname, url.port, timeout=self.timeout)
        try:
            connection.request(
                "POST",
                path,
                body=body,
                headers={"Content-Type": "application/json", "Accept": "text/event-stream"},
            )
            sock = connection.sock
            response = connection.getresponse()
        except http.client.HTTPException:
            connection.close()
            raise NotHttpError(
                "UNAVAILABLE", f"{self.base_url} does not answer HTTP/1.1 (a gRPC port?); use the REST port"
            ) from None
        except OSError as error:
            connection.close()
            raise ServingError("UNAVAILABLE", f"cannot reach {self.base_url}: {error}") from None
        return response.status, response.getheader("Content-Type", ""), response, sock

    def offers_streaming(self) -> bool:
        """Whether the server has the `:generate_stream` route (the embedded server does; TF Serving does not).

        Asks once per client, for a model no server has: the route answers
        NOT_FOUND "Servable not found ...", while a server without it
        answers "Malformed request" (400). An unreachable server raises
        ServingError (and is asked again next time).
        """
        if self._offers_streaming is None:
            body = json.dumps({"tokens": [1], "max_new_tokens": 1}).encode()
            status, _, response, _ = self._open_stream(self._path(_PROBE_MODEL) + ":generate_stream", body)
            with response:
                text = response.read().decode("utf-8", errors="replace")
            message = _error_message(text, response.reason)
            self._offers_streaming = status == 404 and message.startswith("Servable not found")
        return self._offers_streaming

    def generate_stream(
        self,
        model: str,
        *,
        prompt: str | None = None,
        tokens=None,
        state=None,
        max_new_tokens: int = 16,
        temperature: float = 1.0,
        top_k: int = 0,
        seed: int = 0,
        stop=(),
        sequence_id: int = 0,
        sequence_control: int = 0,
        version: int | None = None,
        version_label: str | None = None,
    ) -> GenerationStream:
        """POST ...:generate_stream and read its events; same arguments and result as PredictionClient's.

        `timeout` bounds the connection and each wait for the next event.
        """
        request = generate_request(
            prompt=prompt,
            tokens=tokens,
            state=state,
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            top_k=top_k,
            seed=seed,
            stop=stop,
            sequence_id=sequence_id,
            sequence_control=sequence_control,
        )
        body = json.dumps(json_format.MessageToDict(request, preserving_proto_field_name=True)).encode()
        path = self._path(model, version, version_label) + ":generate_stream"
        status, content_type, response, sock = self._open_stream(path, body)
        if status != 200 or not content_type.startswith("text/event-stream"):
            with response:
                message = _error_message(response.read().decode("utf-8", errors="replace"), response.reason)
            raise ServingError(CODE_FOR_HTTP.get(status, "UNKNOWN"), message)

        def messages():
            with response:
                try:
                    for event, data in server_sent_events(response):
                        doc = json.loads(data)
                        if event == "error":
                            code = doc.get("code") if doc.get("code") in CODE_NUMBERS else "UNKNOWN"
                            raise ServingError(code, doc.get("error", data))
                        if event == "done":
                            final = json_format.ParseDict(
                                doc,
                                protos.GenerateResponse(),
                                ignore_unknown_fields=True,
                                descriptor_pool=protos.POOL,
                            )
                            yield summary_from_response(final, model)
                            return
                        yield StreamPiece(doc["text"], list(doc["token_ids"]))
                except (OSError, http.client.HTTPException, ValueError) as error:
                    raise ServingError(
                        "UNAVAILABLE", f"the stream from {self.base_url} broke: {error}"
                    ) from None

        def cancel():
            try:
                sock.shutdown(socket.SHUT_RDWR)  # unblocks a read on another thread; the server sees EOF
            except OSError:
                pass

        return GenerationStream(messages(), cancel)

    def close(self) -> None:
        """Forgets the cached metadata (each request has its own connection)."""
        self._metadata.clear()

    def __enter__(self) -> RestClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
