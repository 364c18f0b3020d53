"""The server's options: `tensorflow_model_server`'s flags and its text-proto files.

`add_server_flags(parser)` declares the flags with TF Serving's names;
`options_from_flags(args)` reads and checks every file they point to and
returns a `ServerOptions`. Files are protobuf text format, parsed by
protobuf itself:

| flag                          | message              | example line                                  |
|-------------------------------|----------------------|-----------------------------------------------|
| `--model_config_file`         | `ModelServerConfig`  | `model_config_list { config { name: "m" ... } }` |
| `--ssl_config_file`           | `SSLConfig`          | `server_key: "-----BEGIN PRIVATE KEY..."`      |
| `--monitoring_config_file`    | `MonitoringConfig`   | `prometheus_config { enable: true }`          |
| `--batching_parameters_file`  | `BatchingParameters` | `max_batch_size { value: 32 }`                |

Every problem is a `UserError` naming the flag and the file.

Example:

>>> options = ServerOptions.for_model("charlm", "/models/charlm", port=0, rest_api_port=0)
>>> options.model_config.model_config_list.config[0].name
'charlm'
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os

from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

from rnnserve.errors import UserError
from rnnserve.serving.config_protos import BatchingParameters, MonitoringConfig, SSLConfig
from rnnserve.serving.errors import ServingError

PLATFORM = "tensorflow"
DEFAULT_PROMETHEUS_PATH = "/monitoring/prometheus/metrics"  # PrometheusExporter::kPrometheusPath
DEFAULT_MAX_REQUEST_BYTES = 32 * 1024 * 1024  # loopback-friendly, far below gRPC's 2 GiB
# Numeric flags -> the (lowest, highest) value accepted; checked before any file is read.
FLAG_RANGES = {
    "port": (0, 65535),
    "rest_api_port": (0, 65535),
    "grpc_max_threads": (1, math.inf),
    "rest_api_num_threads": (1, math.inf),
    "rest_api_timeout_in_ms": (0, math.inf),  # 0: no run timeout
    "max_request_bytes": (1024, math.inf),
    "file_system_poll_wait_seconds": (0, math.inf),
    "model_config_file_poll_wait_seconds": (0, math.inf),
    "tensorflow_intra_op_parallelism": (0, math.inf),  # 0: TensorFlow's default
    "tensorflow_inter_op_parallelism": (0, math.inf),
}


@dataclasses.dataclass
class ServerOptions:
    """Everything `ModelServer` needs; defaults are `tensorflow_model_server`'s unless noted.

    Args:
        model_config: the models to serve (a ModelServerConfig).
        host: interface both APIs bind to (ours; TF Serving binds every interface).
        port: gRPC port; 0 picks a free one.
        rest_api_port: REST port; 0 picks a free one, None turns REST off. (The
            CLI flag follows TF Serving: `--rest_api_port 0` means off; its
            default is 8501, like the tensorflow/serving image, where TF
            Serving's binary defaults to off.)
        file_system_poll_wait_seconds: how often model base paths are listed.
        model_config_file: path re-read every `model_config_file_poll_wait_seconds` (0 = never).
        ssl: SSLConfig for gRPC, or None for plaintext.
        monitoring: MonitoringConfig, or None (no /monitoring endpoint).
        batching: BatchingParameters when --enable_batching, else None.
        grpc_max_threads: worker threads of the gRPC server.
        rest_api_num_threads: worker threads of the REST server.
        rest_api_timeout_in_ms: per-request TensorFlow run timeout for REST.
        max_request_bytes: largest request accepted on either API (ours).
        allow_version_labels_for_unavailable_models: let a label name a version
            that is not AVAILABLE yet.
        intra_op_threads / inter_op_threads: TensorFlow session thread pools (0 = TF default).
    """

    model_config: model_server_config_pb2.ModelServerConfig
    host: str = "127.0.0.1"
    port: int = 8500
    rest_api_port: int | None = 8501
    file_system_poll_wait_seconds: float = 1.0
    model_config_file: str | None = None
    model_config_file_poll_wait_seconds: float = 0.0
    ssl: object | None = None
    monitoring: object | None = None
    batching: object | None = None
    grpc_max_threads: int = 16
    rest_api_num_threads: int = 16
    rest_api_timeout_in_ms: int = 30000
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    allow_version_labels_for_unavailable_models: bool = False
    intra_op_threads: int = 0
    inter_op_threads: int = 0

    @classmethod
    def for_model(cls, name: str, base_path: str, **kwargs) -> ServerOptions:
        """Options serving one model, like `--model_name NAME --model_base_path PATH`."""
        return cls(model_config=single_model_config(name, base_path), **kwargs)

    @property
    def prometheus_path(self) -> str | None:
        """The metrics path when Prometheus export is on, else None."""
        if self.monitoring is None or not self.monitoring.prometheus_config.enable:
            return None
        return self.monitoring.prometheus_config.path or DEFAULT_PROMETHEUS_PATH


def single_model_config(name: str, base_path: str) -> model_server_config_pb2.ModelServerConfig:
    """The ModelServerConfig `--model_name/--model_base_path` stand for."""
    config = model_server_config_pb2.ModelServerConfig()
    model = config.model_config_list.config.add()
    model.name, model.base_path, model.model_platform = name, base_path, PLATFORM
    return config


def validate_model_server_config(config) -> None:
    """Checks a ModelServerConfig as TF Serving does; raises ServingError(INVALID_ARGUMENT).

    Example:

    >>> validate_model_server_config(single_model_config("m", "/models/m"))
    """
    if config.WhichOneof("config") != "model_config_list":
        raise ServingError(
            "INVALID_ARGUMENT",
            "ServerModelConfig type not supported by HandleReloadConfigRequest. "
            "Only ModelConfigList is currently supported",
        )
    seen = set()
    for model in config.model_config_list.config:
        if not model.name:
            raise ServingError("INVALID_ARGUMENT", "Every model in the config list needs a name.")
        if model.name in seen:
            raise ServingError(
                "INVALID_ARGUMENT", f"Illegal to list model {model.name} multiple times in config list"
            )
        seen.add(model.name)
        if not model.model_platform:
            raise ServingError(
                "INVALID_ARGUMENT",
                "Illegal setting neither ModelServerConfig::model_type (deprecated) "
                "nor ModelServerConfig::model_platform.",
            )
        if model.model_platform != PLATFORM:
            raise ServingError(
                "INVALID_ARGUMENT",
                f"Model {model.name} requests unsupported platform {model.model_platform}",
            )
        if not model.base_path:
            raise ServingError("INVALID_ARGUMENT", f"Model {model.name} has no base_path.")


def read_text_proto(path: str, message, flag: str):
    """Parses the text-format file `path` into `message`; UserError naming `flag` on failure."""
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except OSError as error:
        raise UserError(f"{flag} file '{path}' cannot be read ({error.strerror}).") from None
    try:
        return text_format.Parse(text, message)
    except text_format.ParseError as error:
        raise UserError(
            f"{flag} file '{path}' is not a valid {message.DESCRIPTOR.name} text proto: {error}"
        ) from None


def read_model_config_file(path: str):
    """Reads and validates a --model_config_file."""
    config = read_text_proto(path, model_server_config_pb2.ModelServerConfig(), "--model_config_file")
    try:
        validate_model_server_config(config)
    except ServingError as error:
        raise UserError(f"--model_config_file '{path}': {error.message}") from None
    return config


def check_batching(parameters) -> None:
    """Checks BatchingParameters the way TF Serving's batching session does."""
    sizes = list(parameters.allowed_batch_sizes)
    if parameters.pad_variable_length_inputs:
        raise UserError(
            "--batching_parameters_file: pad_variable_length_inputs is not supported by the embedded server."
        )
    if any(b <= a for a, b in zip(sizes, sizes[1:])):
        raise UserError(
            "--batching_parameters_file: allowed_batch_sizes entries must be monotonically increasing."
        )
    max_size = parameters.max_batch_size.value if parameters.HasField("max_batch_size") else None
    splitting = parameters.enable_large_batch_splitting.value
    if sizes and max_size is not None and sizes[-1] != max_size and not splitting:
        raise UserError(
            "--batching_parameters_file: the final entry in allowed_batch_sizes must equal max_batch_size."
        )
    if splitting and parameters.HasField("max_execution_batch_size"):
        if parameters.max_execution_batch_size.value != max_size:  # TF Serving reads it only when splitting
            raise UserError(
                "--batching_parameters_file: max_execution_batch_size must equal max_batch_size, because "
                "the embedded server never splits a request into smaller batches."
            )
    for name in ("max_batch_size", "num_batch_threads", "max_enqueued_batches"):
        if parameters.HasField(name) and getattr(parameters, name).value < 1:
            raise UserError(f"--batching_parameters_file: {name} must be at least 1.")


def add_server_flags(parser: argparse.ArgumentParser) -> None:
    """Declares `tensorflow_model_server`'s flags (and ours) on `parser`."""
    add = parser.add_argument
    add("--port", type=int, default=8500, help="gRPC port (0 = any free port). Default 8500.")
    add("--rest_api_port", type=int, default=8501, help="REST port; 0 turns REST off. Default 8501.")
    add("--host", default="127.0.0.1", help="Interface to bind. Default 127.0.0.1 (loopback only).")
    add("--model_name", default="default", help="Model name when serving one model. Default 'default'.")
    add("--model_base_path", help="Directory of integer version subdirectories for --model_name.")
    add("--model_config_file", help="ModelServerConfig text proto listing the models to serve.")
    add(
        "--model_config_file_poll_wait_seconds",
        type=float,
        default=0.0,
        help="Re-read --model_config_file this often (0 = only at start).",
    )
    add(
        "--file_system_poll_wait_seconds",
        type=float,
        default=1.0,
        help="How often to look for new versions. Default 1.",
    )
    add("--ssl_config_file", help="SSLConfig text proto (PEM key/cert inline) for gRPC TLS.")
    add("--monitoring_config_file", help="MonitoringConfig text proto (Prometheus on the REST port).")
    add("--enable_batching", action="store_true", help="Merge concurrent Predict calls into batches.")
    add(
        "--batching_parameters_file",
        help="BatchingParameters text proto (implies nothing without --enable_batching).",
    )
    add(
        "--allow_version_labels_for_unavailable_models",
        action="store_true",
        help="Let version_labels name versions that are not AVAILABLE yet.",
    )
    add("--grpc_max_threads", type=int, default=16, help="gRPC worker threads. Default 16.")
    add("--rest_api_num_threads", type=int, default=16, help="REST worker threads. Default 16.")
    add("--rest_api_timeout_in_ms", type=int, default=30000, help="REST request timeout. Default 30000.")
    add(
        "--max_request_bytes",
        type=int,
        default=DEFAULT_MAX_REQUEST_BYTES,
        help=f"Largest request accepted on either API. Default {DEFAULT_MAX_REQUEST_BYTES}.",
    )
    add(
        "--tensorflow_intra_op_parallelism", type=int, default=0, help="TF intra-op threads (0 = TF default)."
    )
    add(
        "--tensorflow_inter_op_parallelism", type=int, default=0, help="TF inter-op threads (0 = TF default)."
    )


def options_from_flags(args: argparse.Namespace) -> ServerOptions:
    """Builds ServerOptions from parsed flags, reading every file they name."""
    for flag, (low, high) in FLAG_RANGES.items():
        value = getattr(args, flag)
        if not (math.isfinite(value) and low <= value <= high):
            wanted = f"in [{low}, {high}]" if high < math.inf else f"at least {low}"
            raise UserError(f"--{flag} must be {wanted}, got {value}.")
    if args.model_config_file and args.model_base_path:
        raise UserError("Pass either --model_config_file or --model_base_path, not both.")
    if args.model_config_file:
        model_config = read_model_config_file(args.model_config_file)
    elif args.model_base_path:
        model_config = single_model_config(args.model_name, os.path.abspath(args.model_base_path))
    else:
        raise UserError(
            "Nothing to serve: pass --model_base_path DIR (with --model_name) or --model_config_file FILE."
        )
    batching = None
    if args.enable_batching:
        batching = BatchingParameters()
        if args.batching_parameters_file:
            read_text_proto(args.batching_parameters_file, batching, "--batching_parameters_file")
        check_batching(batching)
    ssl = (
        read_text_proto(args.ssl_config_file, SSLConfig(), "--ssl_config_file")
        if args.ssl_config_file
        else None
    )
    if ssl is not None and not (ssl.server_key and ssl.server_cert):
        raise UserError(
            f"--ssl_config_file '{args.ssl_config_file}' must set both server_key and server_cert."
        )
    monitoring = None
    if args.monitoring_config_file:
        monitoring = read_text_proto(
            args.monitoring_config_file, MonitoringConfig(), "--monitoring_config_file"
        )
    return ServerOptions(
        model_config=model_config,
        host=args.host,
        port=args.port,
        rest_api_port=args.rest_api_port or None,
        file_system_poll_wait_seconds=args.file_system_poll_wait_seconds,
        model_config_file=args.model_config_file,
        model_config_file_poll_wait_seconds=args.model_config_file_poll_wait_seconds,
        ssl=ssl,
        monitoring=monitoring,
        batching=batching,
        grpc_max_threads=args.grpc_max_threads,
        rest_api_num_threads=args.rest_api_num_threads,
        rest_api_timeout_in_ms=args.rest_api_timeout_in_ms,
        max_request_bytes=args.max_request_bytes,
        allow_version_labels_for_unavailable_models=args.allow_version_labels_for_unavailable_models,
        intra_op_threads=args.tensorflow_intra_op_parallelism,
        inter_op_threads=args.tensorflow_inter_op_parallelism,
    )
