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

Typical use (server with REST on 127.0.0.1:8501)::

    client = RestClient("http://127.0.0.1:8501", timeout=10)
    client.predict("charlm", {"tokens": np.array([[5, 6, 7]], np.int32)})["logits"]
"""

from __future__ import annotations

import base64
import http.client
import json
import urllib.error
import urllib.parse
import urllib.request

import numpy as np
from google.protobuf import json_format

from rnnserve.serving import protos
from rnnserve.serving.client_types import ModelMetadata, Outputs, statuses_from_response
from rnnserve.serving.errors import HTTP_STATUS, ServingError
from rnnserve.serving.json_tensors import json_to_array

# HTTP status -> the canonical code a REST client reports (first code with that status).
CODE_FOR_HTTP = {}
for _code, _status in HTTP_STATUS.items():
    CODE_FOR_HTTP.setdefault(_status, _code)


class NotHttpError(ServingError):
    """The target does not answer HTTP/1.x, e.g. it is a gRPC port (use `PredictionClient` or the REST port)."""


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
            text = error.read().decode("utf-8", errors="replace")
            try:
                message = json.loads(text)["error"]
            except (ValueError, KeyError, TypeError):
                message = text or error.reason
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
        arrays = {name: json_to_array(values[name], signature.outputs[name].dtype) for name in names}
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

    def close(self) -> None:
        self._metadata.clear()

    def __enter__(self) -> RestClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
