"""`ServerCore`: the middle layer of request handling, shared by the gRPC and REST front ends.

Requests go front end (`grpc_api` / `rest_api`) -> `ServerCore` ->
`servable_inference` -> `Servable`. `ServerCore` (TF Serving's name for
this layer) resolves a ModelSpec to a loaded version (through the
`ModelManager`), runs the request (through `serving.servable_inference`, batched
when `--enable_batching`; a Predict on a server-side sequence through
`serving.sequence_predict`), starts streaming generations (`generate_stream`,
decoded by the server's `serving.decode_lanes.Decoder`), records TF Serving's request metrics, and
answers GetModelMetadata, GetModelStatus and HandleReloadConfigRequest with
the response protos TF Serving sends. Errors are `ServingError`s; each
front end turns them into its own status.

Example:

```python
core = ServerCore(manager, metrics)
response = core.status(get_model_status_pb2.GetModelStatusRequest(model_spec=spec))
response.model_version_status[0].state == get_model_status_pb2.ModelVersionStatus.AVAILABLE
# True
```
"""

from __future__ import annotations

import contextlib
import time

import numpy as np
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_management_pb2,
    model_pb2,
)

from rnnserve import contract
from rnnserve.serving import decoding, sequence_predict, servable_inference
from rnnserve.serving.decode_lanes import Decoder
from rnnserve.serving.errors import CODE_NUMBERS, ServingError
from rnnserve.serving.unary_batching import UnaryBatcher

SIGNATURE_DEF = "signature_def"


class ServerCore:
    """Request handling over a ModelManager.

    Args:
        manager: the `ModelManager` holding the loaded versions.
        metrics: the server's `Metrics`.
        batcher: a `Batcher` when batching is on, else None.
        max_tensor_bytes: the largest decoded input TensorProto accepted, in bytes.
        method_name_check: Classify / Regress / MultiInference need classify /
            regress method names (`--enable_signature_method_name_check`).
        sequences: the `SequenceStore` of server-side sequences, or None (Predict
            then treats `sequence_id` like any unknown input).

    Attributes:
        decoder: the `Decoder` of every streaming generation (and, with
            batching, of one-token `generate` calls).
    """

    def __init__(
        self,
        manager,
        metrics,
        batcher=None,
        max_tensor_bytes: int | None = None,
        method_name_check: bool = False,
        sequences=None,
    ):
        self.manager = manager
        self.metrics = metrics
        self.batcher = batcher
        self.max_tensor_bytes = max_tensor_bytes
        self.method_name_check = method_name_check
        self.sequences = sequences
        self.decoder = Decoder(metrics)

    def _unary_batcher(self, servable):
        """What batches a unary call (`--enable_per_model_batching_parameters` first), or None."""
        batcher = servable.batcher or self.batcher
        return UnaryBatcher(batcher, self.decoder) if batcher is not None else None

    @contextlib.contextmanager
    def _call(self, model_spec, api: str, entrypoint: str):
        """Leases the servable a request names and records its count and latency."""
        started = time.monotonic()
        status = "OK"
        try:
            if model_spec is None:
                raise ServingError.missing_model_spec()
            with self.manager.lease(model_spec) as servable:
                yield servable
        except ServingError as error:
            status = error.code
            raise
        except Exception:  # a bug: the front ends answer INTERNAL, so count it as that
            status = "INTERNAL"
            raise
        finally:
            name = model_spec.name if model_spec is not None else ""
            self.metrics.record_request(name, api, entrypoint, status, time.monotonic() - started)

    def predict(self, model_spec, inputs, output_filter=(), *, entrypoint: str, timeout_ms: int = 0):
        """Runs one Predict; returns (servable, alias -> numpy array).

        Args:
            model_spec: the request's ModelSpec (None if the request had none).
            inputs: alias -> TensorProto / array, or a function of the servable
                returning that mapping (REST builds arrays from the signature's
                dtypes, which it only knows once the version is resolved).
            output_filter: output aliases to return (empty = all).
            entrypoint: "GRPC" or "REST" (a metrics label).
            timeout_ms: TensorFlow run timeout (0 = none).
        """
        with self._call(model_spec, "Predict", entrypoint) as servable:
            if callable(inputs):
                inputs = inputs(servable)
            started = time.monotonic()
            if self.sequences is not None and sequence_predict.names_sequence(inputs):
                servable, outputs = sequence_predict.predict(
                    self.sequences,
                    self.manager,
                    servable,
                    model_spec,
                    inputs,
                    output_filter,
                    timeout_ms,
                    self.max_tensor_bytes,
                    self._unary_batcher(servable),
                )
            else:
                outputs = servable_inference.predict(
                    servable,
                    model_spec.signature_name,
                    inputs,
                    output_filter,
                    timeout_ms,
                    self.max_tensor_bytes,
                    self._unary_batcher(servable),
                )
            self.metrics.runtime_latency.labels(
                model_name=servable.name, API="Predict", runtime="TF1"
            ).observe((time.monotonic() - started) * 1e6)
            return servable, outputs

    def generate_stream(self, model_spec, params, *, entrypoint: str, timeout_ms: int = 0):
        """Starts a streaming generation; returns its `decoding.Stream`.

        The version stays leased (and loaded) until the stream ends; on a
        server-side sequence the stream holds the sequence for its whole
        length and, when it ends, keeps the state after every sampled token
        but the last (a stream that sampled nothing changes nothing).

        Args:
            model_spec: the request's ModelSpec (name, version or version_label).
            params: a `decoding.StreamParams`.
            entrypoint: "GRPC" or "REST" (a metrics label).
            timeout_ms: the longest wait for a busy sequence (0 = none).

        Raises:
            ServingError: before any piece, for an unknown model, a model
                that is not a language model, bad params or a sequence error.
        """
        with self._call(model_spec, "GenerateStream", entrypoint) as servable:
            return self._open_stream(servable, model_spec, params, timeout_ms)

    def _open_stream(self, servable, model_spec, params, timeout_ms: int):
        if not all(name in servable.signatures for name in decoding.STREAM_SIGNATURES):
            raise decoding.not_a_language_model(servable)
        self.decoder.facts(servable)
        releases = contextlib.ExitStack()
        call = None
        try:
            if servable.acquire():  # held until the stream ends, past this request's own lease
                releases.callback(servable.release)
            if params.sequence_id or params.sequence_control:
                if self.sequences is None:
                    raise decoding.invalid(
                        "This server keeps no server-side sequences: leave out sequence_id."
                    )
                sequence_id = decoding.check_integer(params.sequence_id, "sequence_id", 0, 2**64 - 1)
                control = decoding.check_integer(params.sequence_control, "sequence_control", 0, 2**32 - 1)
                sequence_predict.check_control(control)
                call = sequence_predict.begin(
                    self.sequences,
                    self.manager,
                    servable,
                    model_spec,
                    sequence_id,
                    control,
                    params.state is not None,
                    contract.STEP,
                    timeout_ms,
                )
                servable = call.servable
            facts = self.decoder.facts(servable)
            temperature, top_k, seed, max_new_tokens, stop = decoding.check_params(params, facts)
            prompt = decoding.prompt_tokens(params, servable, facts)
            state = call.state if call is not None else None
            if state is None:
                state = decoding.check_state(params.state, facts)
            if state is None:
                state = np.zeros((1, facts.state_size), np.float32)
        except BaseException:
            if call is not None:
                call.abort()
            releases.close()
            raise

        def on_finish(end, kept, error):
            try:
                if call is not None:
                    call.commit(kept) if kept is not None else call.abort()
            finally:
                releases.close()

        stream = decoding.Stream(servable.name, servable.version, call.sequence_id if call else 0, on_finish)
        try:
            self.decoder.stream(
                servable, stream, prompt, state, temperature, top_k, seed, max_new_tokens, stop
            )
        except BaseException:
            on_finish(None, None, None)
            raise
        return stream

    def classify(self, request, *, entrypoint: str, timeout_ms: int = 0):
        """A ClassificationResponse for a ClassificationRequest."""
        spec = request.model_spec if request.HasField("model_spec") else None
        with self._call(spec, "Classify", entrypoint) as servable:
            return servable_inference.classify(servable, request, timeout_ms, self.method_name_check)

    def regress(self, request, *, entrypoint: str, timeout_ms: int = 0):
        """A RegressionResponse for a RegressionRequest."""
        spec = request.model_spec if request.HasField("model_spec") else None
        with self._call(spec, "Regress", entrypoint) as servable:
            return servable_inference.regress(servable, request, timeout_ms, self.method_name_check)

    def multi_inference(self, request, *, entrypoint: str, timeout_ms: int = 0):
        """A MultiInferenceResponse; the model is the first task's (TF Serving's rule)."""
        spec = request.tasks[0].model_spec if request.tasks else model_pb2.ModelSpec()
        with self._call(spec, "MultiInference", entrypoint) as servable:
            return servable_inference.multi_inference(servable, request, timeout_ms, self.method_name_check)

    def metadata(self, request) -> get_model_metadata_pb2.GetModelMetadataResponse:
        """GetModelMetadata: the version's whole SignatureDefMap, packed in an Any."""
        if not request.HasField("model_spec"):
            raise ServingError.missing_model_spec()
        if not request.metadata_field:
            raise ServingError(
                "INVALID_ARGUMENT", "GetModelMetadataRequest must specify at least one metadata_field"
            )
        for field in request.metadata_field:
            if field != SIGNATURE_DEF:
                raise ServingError("INVALID_ARGUMENT", f"Metadata field {field} is not supported")
        with self.manager.lease(request.model_spec) as servable:
            response = get_model_metadata_pb2.GetModelMetadataResponse()
            servable_inference.fill_model_spec(response.model_spec, servable, None)
            signature_map = get_model_metadata_pb2.SignatureDefMap()
            for name, signature in servable.signatures.items():
                signature_map.signature_def[name].CopyFrom(signature)
            response.metadata[SIGNATURE_DEF].Pack(signature_map)
            return response

    def status(self, request) -> get_model_status_pb2.GetModelStatusResponse:
        """GetModelStatus: every known version (or the one asked for), highest first."""
        if not request.HasField("model_spec"):
            raise ServingError.missing_model_spec()
        response = get_model_status_pb2.GetModelStatusResponse()
        for record in self.manager.status(request.model_spec):
            entry = response.model_version_status.add(version=record.version)
            entry.state = get_model_status_pb2.ModelVersionStatus.State.Value(record.state)
            entry.status.SetInParent()  # TF Serving always sends a status (OK = code 0, "")
            if record.error is not None:
                entry.status.error_code = CODE_NUMBERS[record.error.code]
                entry.status.error_message = record.error.message
        return response

    def reload(self, request) -> model_management_pb2.ReloadConfigResponse:
        """HandleReloadConfigRequest: replace the served model list.

        Raises:
            ServingError: the config is invalid or a new model did not load.
        """
        self.manager.apply_config(request.config)
        return model_management_pb2.ReloadConfigResponse()
