"""The gRPC front end: `tensorflow.serving.PredictionService`, `ModelService`, health, streaming.

The servicers unpack requests, call `ServerCore` and turn every
`ServingError` into the call's status code and message, as TF Serving's
`prediction_service_impl.cc` / `model_service_impl.cc` do. A client
deadline becomes the TensorFlow run timeout. `rnnserve.GenerationService`
(ours: generation.proto) streams a generation's pieces; a client that
cancels, or whose deadline passes, cancels the generation on the server.
`grpc.health.v1.Health` reports SERVING for "", `PredictionService`,
`ModelService` (TF Serving's names), `tensorflow.serving.PredictionService`
/ `ModelService` and `rnnserve.GenerationService` while the server runs
(that is how a client learns it can stream), NOT_SERVING once it shuts down. With `--enable_profiler`,
`tensorflow.ProfilerService` answers on the same ports (`serving.profiler`).

Example:

```python
server = build_grpc_server(core, options)       # not started yet
port = server.add_insecure_port("127.0.0.1:0")
```
"""

from __future__ import annotations

import logging
from concurrent import futures

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from tensorflow_serving.apis import (
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from rnnserve.serving import streaming, tensors
from rnnserve.serving.errors import ServingError, truncate
from rnnserve.serving.profiler import ProfilerHandler
from rnnserve.serving.protos import services
from rnnserve.serving.servable_inference import fill_model_spec

log = logging.getLogger("rnnserve.serving")

PREDICTION_SERVICE = "tensorflow.serving.PredictionService"
MODEL_SERVICE = "tensorflow.serving.ModelService"
GENERATION_SERVICE = services.GENERATION_SERVICE  # "rnnserve.GenerationService"
# What grpc.health.v1.Health answers SERVING for: "" (the server), TF Serving's
# short names (--enable_grpc_healthcheck_service) and the full service names.
HEALTH_NAMES = (
    "",
    "PredictionService",
    "ModelService",
    PREDICTION_SERVICE,
    MODEL_SERVICE,
    GENERATION_SERVICE,
)


def _timeout_ms(context) -> int:
    remaining = context.time_remaining()
    return 0 if remaining is None else max(1, int(remaining * 1000))


def _abort(context, error: Exception, method_name: str):
    """Ends the call with a ServingError's status, or INTERNAL for a bug (logged)."""
    if isinstance(error, ServingError):
        context.abort(error.grpc_code, truncate(error.message))
    log.exception("%s failed", method_name)
    context.abort(grpc.StatusCode.INTERNAL, truncate(f"Internal error: {error}"))


def _guarded(method):
    """Runs a servicer method, answering ServingErrors (and bugs) with a status."""

    def wrapper(self, request, context):
        try:
            return method(self, request, context)
        except Exception as error:
            _abort(context, error, method.__name__)

    wrapper.__name__ = method.__name__
    wrapper.__doc__ = method.__doc__
    return wrapper


class PredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer):
    """tensorflow.serving.PredictionService over a ServerCore.

    Args:
        core: the `ServerCore`.
        tensor_content: Predict outputs as `tensor_content` bytes
            (`--enable_serialization_as_tensor_content`), else typed fields.
    """

    def __init__(self, core, tensor_content: bool = False):
        self.core = core
        self.tensor_content = tensor_content

    @_guarded
    def Predict(self, request, context):
        spec = request.model_spec if request.HasField("model_spec") else None
        servable, outputs = self.core.predict(
            spec,
            request.inputs,
            list(request.output_filter),
            entrypoint="GRPC",
            timeout_ms=_timeout_ms(context),
        )
        response = predict_pb2.PredictResponse()
        fill_model_spec(response.model_spec, servable, request.model_spec.signature_name)
        for alias, value in outputs.items():
            tensors.to_tensor_proto(
                value, use_tensor_content=self.tensor_content, out=response.outputs[alias]
            )
        return response

    @_guarded
    def Classify(self, request, context):
        return self.core.classify(request, entrypoint="GRPC", timeout_ms=_timeout_ms(context))

    @_guarded
    def Regress(self, request, context):
        return self.core.regress(request, entrypoint="GRPC", timeout_ms=_timeout_ms(context))

    @_guarded
    def MultiInference(self, request, context):
        return self.core.multi_inference(request, entrypoint="GRPC", timeout_ms=_timeout_ms(context))

    @_guarded
    def GetModelMetadata(self, request, context):
        return self.core.metadata(request)


class ModelServicer(model_service_pb2_grpc.ModelServiceServicer):
    """tensorflow.serving.ModelService over a ServerCore."""

    def __init__(self, core):
        self.core = core

    @_guarded
    def GetModelStatus(self, request, context):
        return self.core.status(request)

    @_guarded
    def HandleReloadConfigRequest(self, request, context):
        return self.core.reload(request)


class GenerationServicer(services.GenerationServiceServicer):
    """rnnserve.GenerationService over a ServerCore: one response per piece, then the totals.

    Errors before the first piece and during the stream end the call with
    the ServingError's status. The call's end for any other reason (the
    client cancels, its deadline passes, the server stops) cancels the
    generation, which stops before its next decode step.
    """

    def __init__(self, core):
        self.core = core

    def Generate(self, request, context):
        """One generation: a GenerateResponse per piece, then one with done = true and the totals."""
        try:
            stream = self.core.generate_stream(
                streaming.model_spec(request),
                streaming.stream_params(request),
                entrypoint="GRPC",
                timeout_ms=_timeout_ms(context),
            )
        except Exception as error:
            _abort(context, error, "Generate")
        if not context.add_callback(stream.cancel):  # the call has already ended
            stream.cancel()
        with stream:
            try:
                for piece in stream.coalesced():
                    yield streaming.piece_response(piece)
            except Exception as error:
                _abort(context, error, "Generate")
            yield streaming.end_response(stream.end)


def server_credentials(ssl_config) -> grpc.ServerCredentials:
    """gRPC server credentials from an SSLConfig (PEM contents inline, as TF Serving reads them)."""
    return grpc.ssl_server_credentials(
        [(ssl_config.server_key.encode(), ssl_config.server_cert.encode())],
        root_certificates=ssl_config.custom_ca.encode() or None,
        require_client_auth=ssl_config.client_verify,
    )


def _server_options(options) -> list[tuple[str, object]]:
    """gRPC server options: ours, then --grpc_channel_arguments (which replace ours on the same key)."""
    ours = [
        ("grpc.max_receive_message_length", options.max_request_bytes),
        ("grpc.max_send_message_length", -1),
        ("grpc.so_reuseport", 0),
    ]
    given = dict(options.grpc_channel_arguments)
    return [(key, value) for key, value in ours if key not in given] + list(options.grpc_channel_arguments)


def _bind(server, address: str, options) -> int:
    """Adds one listening address; raises OSError naming it when it cannot be bound."""
    try:
        if options.ssl is not None:
            port = server.add_secure_port(address, server_credentials(options.ssl))
        else:
            port = server.add_insecure_port(address)
    except RuntimeError:  # grpcio >= 1.59 raises "Failed to bind to address ..."
        port = 0
    if port == 0:
        raise OSError(f"cannot bind gRPC to {address}")
    return port


def build_grpc_server(core, options):
    """A configured, bound, not yet started gRPC server; returns (server, TCP port or None, health).

    It listens on `--port` (none when the port is 0 and a UNIX socket is
    given, as TF Serving), and on `unix:--grpc_socket_path` when set, with the
    same services on both.
    """
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=options.grpc_max_threads, thread_name_prefix="rnnserve-grpc"),
        options=_server_options(options),
    )
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
        PredictionServicer(core, tensor_content=options.tensor_content), server
    )
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelServicer(core), server)
    services.add_GenerationServiceServicer_to_server(GenerationServicer(core), server)
    health_servicer = health.HealthServicer(experimental_non_blocking=True)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    if options.enable_profiler:
        server.add_generic_rpc_handlers((ProfilerHandler(),))
    port = None
    if options.port or not options.grpc_socket_path:
        address = f"{options.host}:{options.port}"
        if ":" in options.host:  # IPv6 literal
            address = f"[{options.host}]:{options.port}"
        port = _bind(server, address, options)
    if options.grpc_socket_path:
        _bind(server, f"unix:{options.grpc_socket_path}", options)
    for service in HEALTH_NAMES:
        health_servicer.set(service, health_pb2.HealthCheckResponse.SERVING)
    return server, port, health_servicer
