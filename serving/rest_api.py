"""The REST front end, on TF Serving's paths, bodies and HTTP status codes.

| method | path                                                     | answer |
|--------|----------------------------------------------------------|--------|
| GET    | `/v1/models/NAME[/versions/N \\| /labels/L]`              | GetModelStatus as JSON |
| GET    | `/v1/models/NAME[/versions/N \\| /labels/L]/metadata`     | `{"model_spec", "metadata": {"signature_def"}}` |
| POST   | `/v1/models/NAME[/versions/N \\| /labels/L]:predict`      | row or columnar predict (see `serving.json_tensors`) |
| POST   | `...:classify`, `...:regress`                            | `{"results": ...}` (see `serving.json_examples`) |
| POST   | `...:generate_stream`                                    | Server-Sent Events, one per piece of a generation (ours; see `serving.streaming`) |
| GET    | the Prometheus path of `--monitoring_config_file`        | metrics text |

Paths match case-insensitively like TF Serving's regular expressions.
Failures answer `{"error": "<message>"}` with the HTTP status of
`serving.errors.HTTP_STATUS`; another method under `/v1/` is 400
"Malformed request: METHOD PATH", a path outside `/v1/` 404 (TF Serving's
codes; its HTML pages there are JSON here). GET status with a label
answers every version of the model, as TF Serving's does. Connections, limits and shutdown are
`serving.rest_server`'s.

Example:

```python
server = build_rest_server(core, options, metrics)   # a RestServer, bound
server.server_address[1]                    # its port
# 8501
```
"""

from __future__ import annotations

import logging
import re
import urllib.parse

from google.protobuf import json_format
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_pb2,
    regression_pb2,
)

from rnnserve.serving import json_examples, json_tensors, sequence_predict, streaming, tensors
from rnnserve.serving.errors import ServingError, truncate
from rnnserve.serving.rest_server import RestServer

log = logging.getLogger("rnnserve.serving")

API_PATH = re.compile(r"/v1/.*", re.IGNORECASE | re.DOTALL)  # kHTTPRestApiHandlerPathRegex
_SPEC = r"/v1/models/([^/:]+)(?:/versions/(\d+)|/labels/([^/:]+))?"
PREDICTION_PATH = re.compile(_SPEC + r":(classify|regress|predict)", re.IGNORECASE)
GENERATE_STREAM_PATH = re.compile(_SPEC + r":generate_stream", re.IGNORECASE)
STATUS_PATH = re.compile(
    r"/v1/models(?:/([^/:]+))?(?:/versions/(\d+)|/labels/([^/:]+))?(?:/(metadata))?", re.IGNORECASE
)


def _model_spec(name: str, version: str | None, label: str | None) -> model_pb2.ModelSpec:
    spec = model_pb2.ModelSpec(name=urllib.parse.unquote(name))
    if version is not None:
        try:
            spec.version.value = int(version)
        except (ValueError, OverflowError):
            raise ServingError(
                "INVALID_ARGUMENT", f"Failed to convert version: {version} to numeric."
            ) from None
        if spec.version.value != int(version):
            raise ServingError("INVALID_ARGUMENT", f"Failed to convert version: {version} to numeric.")
    if label is not None:
        spec.version_label = urllib.parse.unquote(label)
    return spec


def _status_json(message) -> str:
    return json_format.MessageToJson(message, indent=1, always_print_fields_with_no_presence=True)


def _error_answer(error: Exception, method: str, path: str) -> tuple[int, str]:
    """(HTTP status, `{"error": ...}`) of a ServingError, or 500 for a bug (logged; the server keeps serving)."""
    if isinstance(error, ServingError):
        return error.http_status, json_tensors.error_to_json(truncate(error.message))
    log.exception("REST %s %s failed", method, path)
    return 500, json_tensors.error_to_json(truncate(f"Internal error: {error}"))


class RestApi:
    """Turns (method, path, body) into (HTTP status, JSON text) over a ServerCore."""

    def __init__(self, core, timeout_ms: int):
        self.core = core
        self.timeout_ms = timeout_ms

    def handle(self, method: str, path: str, body: bytes) -> tuple[int, str]:
        """(HTTP status, JSON text) of one request; every failure is an `{"error": ...}` answer."""
        try:
            return 200, self._dispatch(method, path, body)
        except Exception as error:
            return _error_answer(error, method, path)

    def generate_stream(self, path: str, body: bytes):
        """POST ...:generate_stream: (200, events) with an iterator of SSE bytes, or (status, JSON error).

        `path` must match GENERATE_STREAM_PATH. Closing the events' iterator
        cancels the generation.
        """
        try:
            spec = _model_spec(*GENERATE_STREAM_PATH.fullmatch(path).groups())
            request = streaming.request_from_json(body, spec)
            stream = self.core.generate_stream(
                streaming.model_spec(request),
                streaming.stream_params(request),
                entrypoint="REST",
                timeout_ms=self.timeout_ms,
            )
        except Exception as error:
            return _error_answer(error, "POST", path)
        return 200, streaming.sse_events(stream)

    def _dispatch(self, method: str, path: str, body: bytes) -> str:
        if method == "POST":
            match = PREDICTION_PATH.fullmatch(path)
            if match:
                name, version, label, verb = match.groups()
                spec = _model_spec(name, version, label)
                return getattr(self, f"_{verb.lower()}")(spec, body)
        elif method == "GET":
            match = STATUS_PATH.fullmatch(path)
            if match:
                name, version, label, metadata = match.groups()
                if not name:
                    raise ServingError("INVALID_ARGUMENT", "Missing model name in request.")
                spec = _model_spec(name, version, label)
                return self._metadata(spec) if metadata else self._status(spec)
        raise ServingError("INVALID_ARGUMENT", f"Malformed request: {method} {path}")

    def _predict(self, spec, body: bytes) -> str:
        doc = json_tensors.parse_json(body)
        spec.signature_name = json_tensors.signature_name(doc)
        fmt = []

        def inputs(servable):
            name = spec.signature_name or "serving_default"
            if name not in servable.signatures:
                raise ServingError(
                    "INVALID_ARGUMENT", f'Serving signature name: "{name}" not found in signature def'
                )
            signature = servable.signatures[name]
            dtypes = {}
            for alias, info in signature.inputs.items():
                try:
                    dtypes[alias] = tensors.numpy_dtype(info.dtype)
                except tensors.TensorError:
                    raise ServingError(
                        "UNIMPLEMENTED", f"Conversion of JSON Value to type: {tensors.dtype_name(info.dtype)}"
                    ) from None
            columns = doc.get("inputs")
            if isinstance(columns, dict) and sequence_predict.names_sequence(columns):
                dtypes = sequence_predict.rest_dtypes(columns, dtypes)  # a server-side sequence
            arrays, request_format = json_tensors.inputs_from_json(doc, dtypes)
            fmt.append(request_format)
            return arrays

        _, outputs = self.core.predict(spec, inputs, entrypoint="REST", timeout_ms=self.timeout_ms)
        return json_tensors.outputs_to_json(outputs, fmt[0])

    def _examples(self, spec, body: bytes, request_class, run, to_json) -> str:
        doc = json_tensors.parse_json(body)
        spec.signature_name = json_tensors.signature_name(doc)
        request = request_class(model_spec=spec, input=json_examples.input_from_json(doc))
        return to_json(run(request, entrypoint="REST", timeout_ms=self.timeout_ms).result)

    def _classify(self, spec, body: bytes) -> str:
        return self._examples(
            spec,
            body,
            classification_pb2.ClassificationRequest,
            self.core.classify,
            json_examples.classification_to_json,
        )

    def _regress(self, spec, body: bytes) -> str:
        return self._examples(
            spec, body, regression_pb2.RegressionRequest, self.core.regress, json_examples.regression_to_json
        )

    def _status(self, spec) -> str:
        response = self.core.status(get_model_status_pb2.GetModelStatusRequest(model_spec=spec))
        return _status_json(response)

    def _metadata(self, spec) -> str:
        request = get_model_metadata_pb2.GetModelMetadataRequest(
            model_spec=spec, metadata_field=["signature_def"]
        )
        response = self.core.metadata(request)
        signature_map = get_model_metadata_pb2.SignatureDefMap()
        response.metadata["signature_def"].Unpack(signature_map)
        options = dict(preserving_proto_field_name=True, always_print_fields_with_no_presence=True)
        return (
            '{\n"model_spec":'
            + json_format.MessageToJson(response.model_spec, indent=None, **options)
            + ',\n"metadata": {"signature_def": '
            + json_format.MessageToJson(signature_map, **options)
            + "}\n}\n"
        )


def build_rest_server(core, options, metrics) -> RestServer:
    """A bound REST server (call serve_forever() on a thread to start it).

    It answers the REST API's paths with `RestApi`, and the Prometheus page
    on `options.prometheus_path` when monitoring is on. A `:generate_stream`
    answer's body is an iterator of events, which the server sends as they come.
    """
    api = RestApi(core, options.rest_api_timeout_in_ms)
    metrics_path = options.prometheus_path

    def app(method: str, path: str, body: bytes) -> tuple[int, str, bytes]:
        if method in ("GET", "HEAD") and metrics_path and path == metrics_path:
            return 200, "text/plain; version=0.0.4", metrics.page()
        if not API_PATH.fullmatch(path):  # TF Serving: libevent's 404 page; here JSON
            return 404, "application/json", json_tensors.error_to_json(f"Not Found: {path}").encode()
        if method == "POST" and GENERATE_STREAM_PATH.fullmatch(path):
            status, answer = api.generate_stream(path, body)
            if status == 200:
                return status, streaming.EVENT_STREAM, answer
        else:
            status, answer = api.handle(method, path, body)
        return status, "application/json", answer.encode("utf-8")

    return RestServer(
        (options.host, options.rest_api_port),
        app,
        num_threads=options.rest_api_num_threads,
        max_request_bytes=options.max_request_bytes,
        cors=options.cors,
    )
