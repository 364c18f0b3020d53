"""`PredictionClient`: numpy in, numpy out, over TF Serving's gRPC API.

Works unchanged against the embedded server (`rnnserve serve`) and a real
`tensorflow_model_server`. Needs numpy, grpcio and protobuf only: the
messages are `serving.protos`' wire-compatible copies of TF Serving's, so
neither TensorFlow nor `tensorflow-serving-api` is imported. Every call
names the model and signature explicitly and carries a deadline; failures
raise `serving.errors.ServingError` with the server's status code and
message (`HttpPortError` when the target is a REST port).

Typical use (server on 127.0.0.1:8500)::

    with PredictionClient("127.0.0.1:8500", timeout=10) as client:
        outputs = client.predict("charlm", {"tokens": np.array([[5, 6, 7]], np.int32)})
        outputs["logits"].shape        # (1, 3, V)
        client.status("charlm")        # [VersionStatus(version=1, state='AVAILABLE', ...)]
        if client.offers_streaming():  # the embedded server's rnnserve.GenerationService
            for piece in client.generate_stream("charlm", prompt="the ", max_new_tokens=20):
                print(piece.text, end="", flush=True)
"""

from __future__ import annotations

import grpc
from google.protobuf import text_format
from grpc_health.v1 import health_pb2, health_pb2_grpc

from rnnserve.serving import protos, tensors
from rnnserve.serving.client_types import (
    GenerationStream,
    ModelMetadata,
    Outputs,
    StreamPiece,
    generate_request,
    statuses_from_response,
    summary_from_response,
)
from rnnserve.serving.errors import ServingError
from rnnserve.serving.protos import services

DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024

# What grpc reports when the port answers HTTP/1.x (a REST port) instead of HTTP/2.
_HTTP1_SIGNS = ("Failed parsing HTTP/2", "http1.x server")


class HttpPortError(ServingError):
    """The target answered HTTP/1.x, not gRPC: it is a REST port (use `RestClient` or the gRPC port)."""


def tls_credentials(
    ca_pem: bytes | None = None, client_key_pem: bytes | None = None, client_cert_pem: bytes | None = None
) -> grpc.ChannelCredentials:
    """Channel credentials for a TLS server (CA to trust; key/cert for client_verify)."""
    return grpc.ssl_channel_credentials(
        root_certificates=ca_pem, private_key=client_key_pem, certificate_chain=client_cert_pem
    )


def model_spec_fields(
    spec,
    model: str,
    signature_name: str | None = None,
    version: int | None = None,
    version_label: str | None = None,
) -> None:
    """Fills a ModelSpec (name, signature, version or label)."""
    if version is not None and version_label is not None:
        raise ValueError(
            f"Received both version={version} and version_label={version_label!r}; pass at most one."
        )
    spec.name = model
    if signature_name is not None:
        spec.signature_name = signature_name
    if version is not None:
        spec.version.value = int(version)
    if version_label is not None:
        spec.version_label = version_label


class PredictionClient:
    """A gRPC client for TF Serving's PredictionService and ModelService.

    Args:
        target: "host:port" of the server.
        timeout: deadline of every call, in seconds (default 30).
        credentials: `grpc.ChannelCredentials` for TLS (see `tls_credentials`);
            None for plaintext.
        max_message_bytes: largest reply accepted (default 64 MiB).

    Example:

    ```python
    client = PredictionClient("127.0.0.1:8500", timeout=5)
    client.predict("charlm", {"tokens": np.array([[1, 2]], np.int32)})["logits"].shape
    # (1, 2, 34)
    ```
    """

    def __init__(
        self,
        target: str,
        timeout: float = 30.0,
        credentials: grpc.ChannelCredentials | None = None,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    ):
        options = [
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes),
        ]
        if credentials is None:
            self._channel = grpc.insecure_channel(target, options=options)
        else:
            self._channel = grpc.secure_channel(target, credentials, options=options)
        self.target, self.timeout = target, timeout
        self._predictions = services.PredictionServiceStub(self._channel)
        self._models = services.ModelServiceStub(self._channel)
        self._health = health_pb2_grpc.HealthStub(self._channel)
        self._generation = services.GenerationServiceStub(self._channel)
        self._offers_streaming: bool | None = None

    def _error(self, error: grpc.RpcError) -> ServingError:
        details = error.details() or ""
        if error.code() == grpc.StatusCode.UNAVAILABLE and any(sign in details for sign in _HTTP1_SIGNS):
            return HttpPortError(
                "UNAVAILABLE", f"{self.target} is an HTTP port, not gRPC; use RestClient or the gRPC port"
            )
        return ServingError(error.code().name, details)

    def _call(self, method, request):
        try:
            return method(request, timeout=self.timeout)
        except grpc.RpcError as error:
            raise self._error(error) from None

    def predict(
        self,
        model: str,
        inputs: dict,
        signature_name: str = "serving_default",
        output_filter=(),
        version: int | None = None,
        version_label: str | None = None,
    ) -> Outputs:
        """Runs a signature; returns its outputs as numpy arrays.

        Args:
            model: model name.
            inputs: alias -> array-like (numpy dtypes are sent as they are:
                pass int32 for int32 inputs).
            signature_name: which signature (default "serving_default").
            output_filter: aliases to return (default: all).
            version / version_label: pin a version (default: the latest).
        """
        request = protos.PredictRequest()
        model_spec_fields(request.model_spec, model, signature_name, version, version_label)
        for alias, value in inputs.items():
            tensors.to_tensor_proto(value, out=request.inputs[alias])
        request.output_filter.extend(output_filter)
        response = self._call(self._predictions.Predict, request)
        arrays = {alias: tensors.to_ndarray(proto) for alias, proto in response.outputs.items()}
        spec = response.model_spec
        return Outputs(
            arrays,
            spec.name or model,
            spec.version.value if spec.HasField("version") else None,
            spec.signature_name or signature_name,
        )

    def metadata(
        self, model: str, version: int | None = None, version_label: str | None = None
    ) -> ModelMetadata:
        """The served version's signatures (GetModelMetadata with `signature_def`)."""
        request = protos.GetModelMetadataRequest(metadata_field=["signature_def"])
        model_spec_fields(request.model_spec, model, None, version, version_label)
        return ModelMetadata.from_response(self._call(self._predictions.GetModelMetadata, request))

    def status(self, model: str, version: int | None = None, version_label: str | None = None) -> list:
        """GetModelStatus: a `VersionStatus` per known version."""
        request = protos.GetModelStatusRequest()
        model_spec_fields(request.model_spec, model, None, version, version_label)
        return statuses_from_response(self._call(self._models.GetModelStatus, request))

    def reload_config(self, config) -> None:
        """HandleReloadConfigRequest with a ModelServerConfig (text format, or a message of either pool)."""
        if isinstance(config, str):
            config = text_format.Parse(config, protos.ModelServerConfig())
        request = protos.ReloadConfigRequest()
        request.config.ParseFromString(config.SerializeToString())  # TensorFlow's or ours
        self._call(self._models.HandleReloadConfigRequest, request)

    def health(self, service: str = "") -> str:
        """The grpc.health.v1 status of `service` ("" = the server): "SERVING", "NOT_SERVING", ..."""
        response = self._call(self._health.Check, health_pb2.HealthCheckRequest(service=service))
        return health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)

    def offers_streaming(self) -> bool:
        """Whether the server streams generations: its health service has `rnnserve.GenerationService`.

        A real TF Serving answers False. Asked once per client; an
        unreachable server raises ServingError (and is asked again next time).
        """
        if self._offers_streaming is None:
            try:
                self._offers_streaming = self.health(services.GENERATION_SERVICE) == "SERVING"
            except ServingError as error:
                if error.code not in ("NOT_FOUND", "UNIMPLEMENTED"):  # no such service / no health service
                    raise
                self._offers_streaming = False
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
        """Streams a generation (rnnserve.GenerationService/Generate): pieces of text as they are sampled.

        Args:
            model: model name (a language model export).
            prompt / tokens: the prompt as text, or as token ids (exactly one).
            state: (S,) float32 state to continue from (client-held); None = zeros.
            max_new_tokens: tokens to sample (1 up to the model's limit; default 16).
            temperature: 0 = greedy (default 1.0); top_k: 0 = no truncation.
            seed: token i is drawn with (seed, i), as the `generate` signature does.
            stop: strings that end the generation (not sent themselves).
            sequence_id / sequence_control: a server-side sequence and its
                control (`rnnserve.contract.SEQUENCE_*`).
            version / version_label: pin a version (default: the latest).

        Returns:
            A `GenerationStream`; the whole stream has the client's `timeout` as its deadline.
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
        model_spec_fields(request.model_spec, model, None, version, version_label)
        call = self._generation.Generate(request, timeout=self.timeout)

        def messages():
            try:
                for response in call:
                    if response.done:
                        yield summary_from_response(response, model)
                        return
                    yield StreamPiece(response.text, list(response.token_ids))
            except grpc.RpcError as error:
                raise self._error(error) from None

        return GenerationStream(messages(), call.cancel)

    def close(self) -> None:
        """Closes the channel (streams still open are cancelled)."""
        self._channel.close()

    def __enter__(self) -> PredictionClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
