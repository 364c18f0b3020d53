"""`tensorflow_model_server`'s command line, flag for flag, in one table.

`FLAGS` lists every flag of TF Serving's `model_servers/main.cc` (2.21),
in its order, plus this server's own (`--host`, `--max_request_bytes`, and
for server-side sequences `--max_sequence_number`,
`--sequence_idle_timeout_seconds`).
`add_server_flags(parser)` declares all of them on an argparse parser with
TF Serving's syntax (`tsl::Flags`):

- `--name=value` (and, as argparse allows, `--name value`);
- booleans: a bare `--name` is true; `--name=true|false` (any case) or `=1|0`;
  any other value is "Couldn't interpret value V for flag NAME.";
- a flag given twice: the last one wins (how the tensorflow/serving image's
  fixed flags are overridden by the user's);
- an unknown flag is a one-line error (TF Serving prints "unknown argument"
  and starts anyway).

A flag's `scope` says where it applies: "" here, "rnnserve" here only,
and "gpu", "tpu", "tflite", "alts", "threadpool", "platform" on hardware or
builds this server does not have: those are accepted and named once in
the log as not applicable (`not_applicable(args)`).

Example:

>>> parser = argparse.ArgumentParser(allow_abbrev=False)
>>> add_server_flags(parser)
>>> args = parser.parse_args(["--enable_batching=false", "--port=9000", "--rest_api_enable_cors_support"])
>>> args.enable_batching, args.port, args.rest_api_enable_cors_support
(False, 9000, True)
"""

from __future__ import annotations

import argparse
import dataclasses

from rnnserve.serving.sequences import DEFAULT_IDLE_TIMEOUT_SECONDS, DEFAULT_MAX_SEQUENCES

DEFAULT_MAX_REQUEST_BYTES = 32 * 1024 * 1024  # loopback-friendly, far below gRPC's 2 GiB
NOT_APPLICABLE_SCOPES = ("gpu", "tpu", "tflite", "alts", "threadpool", "platform")
TRUE, FALSE = ("true", "1"), ("false", "0")


@dataclasses.dataclass(frozen=True)
class Flag:
    """One command-line flag.

    Attributes:
        name: the flag without `--`.
        kind: TF Serving's type: "int32", "int64", "float", "bool" or "string".
        default: the value used when the flag is absent (None = unset).
        help: what it does here.
        scope: "" (TF Serving's, implemented), "rnnserve" (ours only), or
            one of NOT_APPLICABLE_SCOPES.
        tf_default: TF Serving's default where ours differs, else None.
        low / high: the range a number must be in, checked before any file
            is read (low None = unchecked, high None = unbounded).
    """

    name: str
    kind: str
    default: object
    help: str
    scope: str = ""
    tf_default: object = None
    low: float | None = None
    high: float | None = None


F = Flag
FLAGS = (
    F(
        "port",
        "int32",
        8500,
        "gRPC port; 0 with --grpc_socket_path = the socket only, 0 alone = any free port",
        low=0,
        high=65535,
    ),
    F("grpc_socket_path", "string", "", "also serve gRPC on this UNIX socket (relative or absolute path)"),
    F("rest_api_port", "int32", 8501, "REST port; 0 turns REST off", tf_default=0, low=0, high=65535),
    F("rest_api_num_threads", "int32", 16, "REST worker threads", tf_default="4 x CPUs", low=1),
    F("rest_api_timeout_in_ms", "int32", 30000, "TensorFlow run timeout of a REST call (0 = none)", low=0),
    F("rest_api_enable_cors_support", "bool", False, "CORS headers on every REST answer, OPTIONS preflight"),
    F("enable_batching", "bool", False, "merge concurrent Predict calls into batches"),
    F(
        "allow_version_labels_for_unavailable_models",
        "bool",
        False,
        "let version_labels name versions that are not AVAILABLE yet",
    ),
    F("batching_parameters_file", "string", "", "BatchingParameters text proto (needs --enable_batching)"),
    F(
        "enable_per_model_batching_parameters",
        "bool",
        False,
        "with --enable_batching, read each version's batching_params.pbtxt",
    ),
    F("model_config_file", "string", "", "ModelServerConfig text proto: the models to serve"),
    F(
        "model_config_file_poll_wait_seconds",
        "float",
        0,
        "re-read --model_config_file this often (0 = only at start)",
        tf_default="whole seconds",
        low=0,
    ),
    F("model_name", "string", "default", "model name with --model_base_path"),
    F("model_base_path", "string", "", "directory of integer version subdirectories"),
    F("num_load_threads", "int32", 0, "versions loaded at once (0 = one at a time)", low=0),
    F("num_unload_threads", "int32", 0, "versions unloaded at once (0 = one at a time)", low=0),
    F("max_num_load_retries", "int32", 5, "retries of a failed load (0 = try once)", low=0),
    F("load_retry_interval_micros", "int64", 60_000_000, "microseconds between load retries"),
    F(
        "file_system_poll_wait_seconds",
        "float",
        1,
        "how often base paths are listed (0 = once)",
        tf_default="whole seconds",
        low=0,
    ),
    F("flush_filesystem_caches", "bool", True, "flush file-system caches after loading (local disks: none)"),
    F(
        "tensorflow_session_parallelism",
        "int64",
        0,
        "intra- and inter-op threads of a session (0 = auto)",
        low=0,
    ),
    F("tensorflow_session_config_file", "string", "", "ConfigProto text proto for every session"),
    F("tensorflow_intra_op_parallelism", "int64", 0, "intra-op threads of a session (0 = auto)", low=0),
    F("tensorflow_inter_op_parallelism", "int64", 0, "inter-op threads of a session (0 = auto)", low=0),
    F("use_alts_credentials", "bool", False, "Google ALTS credentials for gRPC", "alts"),
    F("ssl_config_file", "string", "", "SSLConfig text proto: gRPC over TLS"),
    F("platform_config_file", "string", "", "PlatformConfigMap (other serving platforms)", "platform"),
    F("per_process_gpu_memory_fraction", "float", 0.0, "GPU memory fraction per process", "gpu"),
    F("saved_model_tags", "string", "serve", "comma-separated MetaGraphDef tags to load"),
    F("grpc_channel_arguments", "string", "", "comma-separated key=value gRPC server arguments"),
    F("grpc_max_threads", "int32", 16, "gRPC worker threads", tf_default="4 x CPUs", low=1),
    F("enable_model_warmup", "bool", True, "replay assets.extra/tf_serving_warmup_requests at load"),
    F("num_request_iterations_for_warmup", "int32", 0, "times each warmup record runs (0 = once)", low=0),
    F("version", "bool", False, "print the version and exit"),
    F("monitoring_config_file", "string", "", "MonitoringConfig text proto (Prometheus page)"),
    F(
        "remove_unused_fields_from_bundle_metagraph",
        "bool",
        True,
        "drop unused MetaGraphDef fields (memory only)",
    ),
    F("prefer_tflite_model", "bool", False, "serve model.tflite instead", "tflite"),
    F("num_tflite_pools", "int32", 0, "TFLite interpreter pools", "tflite", tf_default="CPUs"),
    F("num_tflite_interpreters_per_pool", "int32", 1, "TFLite interpreters per pool", "tflite"),
    F(
        "enable_signature_method_name_check",
        "bool",
        False,
        "Classify/Regress need classify/regress method names (off: TF2 predict signatures work)",
    ),
    F("xla_cpu_compilation_enabled", "bool", False, "XLA JIT compilation of the served graphs on CPU"),
    F("xla_gpu_compilation_enabled", "bool", False, "XLA JIT on GPUs", "gpu"),
    F("enable_profiler", "bool", True, "tensorflow.ProfilerService on the gRPC port"),
    F("thread_pool_factory_config_file", "string", "", "custom inter/intra-op thread pools", "threadpool"),
    F("mixed_precision", "string", "", "bfloat16 automatic mixed precision", "gpu"),
    F("skip_initialize_tpu", "bool", False, "skip the TPU system initialization", "tpu"),
    F("enable_grpc_healthcheck_service", "bool", False, "grpc.health.v1.Health (always served here)"),
    F("enable_serialization_as_tensor_content", "bool", False, "Predict outputs as tensor_content bytes"),
    F("host", "string", "127.0.0.1", "interface both APIs bind (TF Serving: every interface)", "rnnserve"),
    F(
        "max_request_bytes",
        "int64",
        DEFAULT_MAX_REQUEST_BYTES,
        "largest request on either API, also after decompression",
        "rnnserve",
        low=1024,
    ),
    F(
        "max_sequence_number",
        "int32",
        DEFAULT_MAX_SEQUENCES,
        "server-side sequences each model holds at once (OVMS's max_sequence_number)",
        "rnnserve",
        low=1,
    ),
    F(
        "sequence_idle_timeout_seconds",
        "float",
        DEFAULT_IDLE_TIMEOUT_SECONDS,
        "a server-side sequence without a call for this long is removed (0 = never)",
        "rnnserve",
        low=0,
    ),
)
del F
FLAGS_BY_NAME = {flag.name: flag for flag in FLAGS}


def _bool(name: str):
    def parse(text: str) -> bool:
        if text.lower() in TRUE:
            return True
        if text.lower() in FALSE:
            return False
        raise argparse.ArgumentTypeError(f"Couldn't interpret value {text} for flag {name}.")

    return parse


def _number(name: str, cast):
    def parse(text: str):
        try:
            return cast(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"Couldn't interpret value {text} for flag {name}.") from None

    return parse


_CASTS = {"int32": int, "int64": int, "float": float}


def add_server_flags(parser: argparse.ArgumentParser) -> None:
    """Declares every flag of `FLAGS` on `parser` (create it with allow_abbrev=False)."""
    for flag in FLAGS:
        meaning = flag.help
        if flag.scope in NOT_APPLICABLE_SCOPES:
            meaning = f"accepted, not applicable here ({flag.scope}): {meaning}"
        shown = str(flag.default).lower() if flag.kind == "bool" else flag.default
        default = f"Default {shown}." if flag.default not in ("", None) else ""
        if flag.tf_default is not None:
            default += f" (TF Serving: {flag.tf_default})"
        text = f"{meaning}. {default}".strip().replace("%", "%%")
        name = f"--{flag.name}"
        if flag.kind == "bool":
            parser.add_argument(
                name,
                nargs="?",
                const=True,
                default=flag.default,
                type=_bool(flag.name),
                metavar="true|false",
                help=text,
            )
        elif flag.kind == "string":
            parser.add_argument(name, default=flag.default, metavar="TEXT", help=text)
        else:
            parser.add_argument(
                name,
                default=flag.default,
                type=_number(flag.name, _CASTS[flag.kind]),
                metavar="N" if flag.kind != "float" else "X",
                help=text,
            )


def not_applicable(args: argparse.Namespace) -> list[str]:
    """The not-applicable flags the command line set to something other than their default."""
    return [
        f"--{flag.name}"
        for flag in FLAGS
        if flag.scope in NOT_APPLICABLE_SCOPES and getattr(args, flag.name) != flag.default
    ]
