"""The server's options: `tensorflow_model_server`'s flags and its text-proto files.

`serving.flags` declares the flags (re-exported here as `add_server_flags`);
`options_from_flags(args)` reads and checks every file they point to and
returns a `ServerOptions`. Files are protobuf text format, parsed by
protobuf itself:

| flag                          | message              | example line                                  |
|-------------------------------|----------------------|-----------------------------------------------|
| `--model_config_file`         | `ModelServerConfig`  | `model_config_list { config { name: "m" ... } }` |
| `--ssl_config_file`           | `SSLConfig`          | `server_key: "-----BEGIN PRIVATE KEY..."`      |
| `--monitoring_config_file`    | `MonitoringConfig`   | `prometheus_config { enable: true }`          |
| `--batching_parameters_file`  | `BatchingParameters` | `max_batch_size { value: 32 }`                |
| `--tensorflow_session_config_file` | `tensorflow.ConfigProto` | `intra_op_parallelism_threads: 2`     |

Every problem is a `ConfigError` naming the flag and the file; a file that
does not parse reads as protobuf's own `Error parsing text-format ...` line.

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
from tensorflow.core.protobuf import config_pb2
from tensorflow_serving.config import model_server_config_pb2

from rnnserve.serving.config_protos import BatchingParameters, MonitoringConfig, SSLConfig
from rnnserve.serving.errors import ConfigError, ServingError
from rnnserve.serving.flags import DEFAULT_MAX_REQUEST_BYTES, FLAGS, add_server_flags, not_applicable
from rnnserve.serving.sequences import DEFAULT_IDLE_TIMEOUT_SECONDS, DEFAULT_MAX_SEQUENCES

PLATFORM = "tensorflow"
DEFAULT_PROMETHEUS_PATH = "/monitoring/prometheus/metrics"  # PrometheusExporter::kPrometheusPath
__all__ = ["ServerOptions", "add_server_flags", "options_from_flags", "read_text_proto"]


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
        session_config: every session's `ConfigProto` (None = TensorFlow's defaults).
        grpc_socket_path: also serve gRPC on this UNIX socket ("" = no socket).
        grpc_channel_arguments: extra gRPC server options, (key, int or str) pairs.
        cors: CORS headers and OPTIONS preflight on the REST API.
        enable_model_warmup: replay each version's warmup file before it serves.
        warmup_iterations: times each warmup record runs.
        saved_model_tags: the MetaGraphDef tags loaded.
        max_num_load_retries: retries of a failed load.
        load_retry_interval_seconds: the wait before each retry.
        num_load_threads / num_unload_threads: versions loaded / unloaded at once (0 = one).
        method_name_check: Classify / Regress need classify / regress method names.
        enable_profiler: tensorflow.ProfilerService on the gRPC port(s).
        tensor_content: Predict outputs sent as tensor_content bytes.
        per_model_batching: read each version's `batching_params.pbtxt` (with batching on).
        max_sequence_number: server-side sequences allowed per model (ours).
        sequence_idle_timeout_seconds: an idle server-side sequence is removed
            after this long (0 = never; ours).
        not_applicable: flags given that mean nothing here (named once in the log).
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
    session_config: object | None = None
    grpc_socket_path: str = ""
    grpc_channel_arguments: list = dataclasses.field(default_factory=list)
    cors: bool = False
    enable_model_warmup: bool = True
    warmup_iterations: int = 1
    saved_model_tags: tuple = ("serve",)
    max_num_load_retries: int = 5
    load_retry_interval_seconds: float = 60.0
    num_load_threads: int = 0
    num_unload_threads: int = 0
    method_name_check: bool = False
    enable_profiler: bool = True
    tensor_content: bool = False
    per_model_batching: bool = False
    max_sequence_number: int = DEFAULT_MAX_SEQUENCES
    sequence_idle_timeout_seconds: float = DEFAULT_IDLE_TIMEOUT_SECONDS
    not_applicable: list = dataclasses.field(default_factory=list)

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


def parse_error_text(error: text_format.ParseError, message) -> str:
    """protobuf's C++ wording of a text-format parse error (what TF Serving logs).

    >>> try:
    ...     text_format.Parse("foo: 1", model_server_config_pb2.ModelServerConfig())
    ... except text_format.ParseError as error:
    ...     print(parse_error_text(error, model_server_config_pb2.ModelServerConfig()))
    Error parsing text-format tensorflow.serving.ModelServerConfig: 1:1: Message type "tensorflow.serving.ModelServerConfig" has no field named "foo".
    """
    text = str(error)
    line, column = error.GetLine(), error.GetColumn()
    if line is not None and text.startswith(f"{line}:{column} : "):
        text = text[len(f"{line}:{column} : ") :]
        if text.startswith("'") and "': " in text:  # Python quotes the offending line first
            text = text[text.index("': ") + 3 :]
    where = f"{line}:{column}: " if line is not None else ""
    return f"Error parsing text-format {message.DESCRIPTOR.full_name}: {where}{text}"


def read_text_proto(path: str, message, flag: str):
    """Parses the text-format file `path` into `message`; ConfigError naming `flag` on failure.

    A parse error reads as protobuf's own line (TF Serving's), then names the flag and file.
    """
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except OSError as error:
        raise ConfigError(f"{flag} file '{path}' cannot be read ({error.strerror}).") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{flag} file '{path}' is not UTF-8 text.") from None
    try:
        return text_format.Parse(text, message)
    except text_format.ParseError as error:
        raise ConfigError(f"{parse_error_text(error, message)} (in {flag} file '{path}')") from None


def read_model_config_file(path: str):
    """Reads and validates a --model_config_file."""
    config = read_text_proto(path, model_server_config_pb2.ModelServerConfig(), "--model_config_file")
    try:
        validate_model_server_config(config)
    except ServingError as error:
        raise ConfigError(f"--model_config_file '{path}': {error.message}") from None
    return config


def check_batching(parameters) -> None:
    """Checks BatchingParameters the way TF Serving's batching session does."""
    sizes = list(parameters.allowed_batch_sizes)
    if parameters.pad_variable_length_inputs:
        raise ConfigError(
            "--batching_parameters_file: pad_variable_length_inputs is not supported by the embedded server."
        )
    if any(b <= a for a, b in zip(sizes, sizes[1:])):
        raise ConfigError(
            "--batching_parameters_file: allowed_batch_sizes entries must be monotonically increasing."
        )
    max_size = parameters.max_batch_size.value if parameters.HasField("max_batch_size") else None
    splitting = parameters.enable_large_batch_splitting.value
    if sizes and max_size is not None and sizes[-1] != max_size and not splitting:
        raise ConfigError(
            "--batching_parameters_file: the final entry in allowed_batch_sizes must equal max_batch_size."
        )
    if splitting and parameters.HasField("max_execution_batch_size"):
        if parameters.max_execution_batch_size.value != max_size:  # TF Serving reads it only when splitting
            raise ConfigError(
                "--batching_parameters_file: max_execution_batch_size must equal max_batch_size, because "
                "the embedded server never splits a request into smaller batches."
            )
    for name in ("max_batch_size", "num_batch_threads", "max_enqueued_batches"):
        if parameters.HasField(name) and getattr(parameters, name).value < 1:
            raise ConfigError(f"--batching_parameters_file: {name} must be at least 1.")


def grpc_channel_arguments(text: str) -> list[tuple[str, object]]:
    """`--grpc_channel_arguments`: comma-separated key=value pairs, int values as ints (TF Serving's rule).

    >>> grpc_channel_arguments("grpc.max_connection_age_ms=2000,grpc.lb_policy_name=grpclb")
    [('grpc.max_connection_age_ms', 2000), ('grpc.lb_policy_name', 'grpclb')]
    """
    pairs = []
    for item in (piece for piece in text.split(",") if piece):
        key, equals, value = item.partition("=")
        if not equals or not key:
            raise ConfigError(f"--grpc_channel_arguments: '{item}' is not key=value.")
        value = value.split("=")[0]  # TF Serving keeps what is before a second '='
        try:
            number = int(value)
            pairs.append((key, number if -(2**31) <= number < 2**31 else value))
        except ValueError:
            pairs.append((key, value))
    return pairs


def session_config(args: argparse.Namespace) -> config_pb2.ConfigProto:
    """Every session's ConfigProto: --tensorflow_session_config_file, then the thread flags, as server.cc."""
    config = config_pb2.ConfigProto()
    if args.tensorflow_session_config_file:
        read_text_proto(args.tensorflow_session_config_file, config, "--tensorflow_session_config_file")
    intra, inter, both = (
        args.tensorflow_intra_op_parallelism,
        args.tensorflow_inter_op_parallelism,
        args.tensorflow_session_parallelism,
    )
    if intra > 0 and inter > 0 and both > 0:
        raise ConfigError(
            "Either configure server_options.tensorflow_session_parallelism or "
            "(server_options.tensorflow_intra_op_parallelism, server_options.tensorflow_inter_op_parallelism) "
            "separately. You cannot configure all."
        )
    if intra > 0 or inter > 0:
        config.intra_op_parallelism_threads, config.inter_op_parallelism_threads = intra, inter
    elif both > 0:
        config.intra_op_parallelism_threads = config.inter_op_parallelism_threads = both
    if args.xla_cpu_compilation_enabled:
        config.graph_options.optimizer_options.global_jit_level = config_pb2.OptimizerOptions.ON_1
    return config


def options_from_flags(args: argparse.Namespace) -> ServerOptions:
    """Builds ServerOptions from parsed flags, reading every file they name."""
    for flag in FLAGS:  # numbers first: checked before any file is read
        if flag.low is None:
            continue
        value = getattr(args, flag.name)
        high = math.inf if flag.high is None else flag.high
        if not (math.isfinite(value) and flag.low <= value <= high):
            wanted = f"in [{flag.low}, {high}]" if high < math.inf else f"at least {flag.low}"
            raise ConfigError(f"--{flag.name} must be {wanted}, got {value}.")
    if args.model_config_file and args.model_base_path:
        raise ConfigError("Pass either --model_config_file or --model_base_path, not both.")
    if args.model_config_file:
        model_config = read_model_config_file(args.model_config_file)
    elif args.model_base_path:
        model_config = single_model_config(args.model_name, os.path.abspath(args.model_base_path))
    else:
        raise ConfigError(
            "Nothing to serve: pass --model_base_path DIR (with --model_name) or --model_config_file FILE."
        )
    if args.batching_parameters_file and not args.enable_batching:
        raise ConfigError(
            "server_options.batching_parameters_file is set without setting "
            "server_options.enable_batching to true."
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
        raise ConfigError(
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
        model_config_file=args.model_config_file or None,
        model_config_file_poll_wait_seconds=args.model_config_file_poll_wait_seconds,
        ssl=ssl,
        monitoring=monitoring,
        batching=batching,
        grpc_max_threads=args.grpc_max_threads,
        rest_api_num_threads=args.rest_api_num_threads,
        rest_api_timeout_in_ms=args.rest_api_timeout_in_ms,
        max_request_bytes=args.max_request_bytes,
        allow_version_labels_for_unavailable_models=args.allow_version_labels_for_unavailable_models,
        session_config=session_config(args),
        grpc_socket_path=args.grpc_socket_path,
        grpc_channel_arguments=grpc_channel_arguments(args.grpc_channel_arguments),
        cors=args.rest_api_enable_cors_support,
        enable_model_warmup=args.enable_model_warmup,
        warmup_iterations=max(1, args.num_request_iterations_for_warmup),
        saved_model_tags=tuple(tag for tag in args.saved_model_tags.split(",") if tag),
        max_num_load_retries=args.max_num_load_retries,
        load_retry_interval_seconds=max(0, args.load_retry_interval_micros) / 1e6,
        num_load_threads=args.num_load_threads,
        num_unload_threads=args.num_unload_threads,
        method_name_check=args.enable_signature_method_name_check,
        enable_profiler=args.enable_profiler,
        tensor_content=args.enable_serialization_as_tensor_content,
        per_model_batching=args.enable_per_model_batching_parameters and args.enable_batching,
        max_sequence_number=args.max_sequence_number,
        sequence_idle_timeout_seconds=args.sequence_idle_timeout_seconds,
        not_applicable=not_applicable(args),
    )
