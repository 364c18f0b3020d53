"""`rnnserve serve` takes `tensorflow_model_server`'s command line, flag for flag.

Oracles: the flag list of TF Serving's `model_servers/main.cc` (2.21), written
out below independently of `serving.flags.FLAGS`; `tsl::Flags`' syntax
(`--flag=value`, booleans bare or `=true|false|1|0`, the last occurrence
wins); the tensorflow/serving image's entrypoint (fixed flags, then the
user's); TF Serving's messages (`Couldn't interpret value ...`,
`Error parsing text-format ...`, `TensorFlow ModelServer: ...`, server.cc's
option checks). Commands run as a user runs them: exit code, one line, no
traceback.
"""

import argparse
import os
import re
import socket

import grpc
import numpy as np
import pytest
from conftest import HALF, REPO_ROOT, ServerProcess, free_port, rnnserve
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from rnnserve.serving.flags import FLAGS, NOT_APPLICABLE_SCOPES, add_server_flags
from rnnserve.serving.tensors import to_ndarray, to_tensor_proto

# main.cc's flag_list, in order (TF Serving 2.21).
TF_SERVING_FLAGS = """
port grpc_socket_path rest_api_port rest_api_num_threads rest_api_timeout_in_ms
rest_api_enable_cors_support enable_batching allow_version_labels_for_unavailable_models
batching_parameters_file enable_per_model_batching_parameters model_config_file
model_config_file_poll_wait_seconds model_name model_base_path num_load_threads
num_unload_threads max_num_load_retries load_retry_interval_micros
file_system_poll_wait_seconds flush_filesystem_caches tensorflow_session_parallelism
tensorflow_session_config_file tensorflow_intra_op_parallelism tensorflow_inter_op_parallelism
use_alts_credentials ssl_config_file platform_config_file per_process_gpu_memory_fraction
saved_model_tags grpc_channel_arguments grpc_max_threads enable_model_warmup
num_request_iterations_for_warmup version monitoring_config_file
remove_unused_fields_from_bundle_metagraph prefer_tflite_model num_tflite_pools
num_tflite_interpreters_per_pool enable_signature_method_name_check
xla_cpu_compilation_enabled xla_gpu_compilation_enabled enable_profiler
thread_pool_factory_config_file mixed_precision skip_initialize_tpu
enable_grpc_healthcheck_service enable_serialization_as_tensor_content
""".split()


def serve_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(allow_abbrev=False)
    add_server_flags(parser)
    return parser


def test_the_table_holds_tf_servings_flags_in_main_cc_order_plus_ours():
    names = [flag.name for flag in FLAGS]
    assert [name for name in names if name in TF_SERVING_FLAGS] == TF_SERVING_FLAGS
    ours = ["host", "max_request_bytes", "max_sequence_number", "sequence_idle_timeout_seconds"]
    assert [flag.name for flag in FLAGS if flag.scope == "rnnserve"] == ours
    assert set(names) == set(TF_SERVING_FLAGS) | set(ours)


def test_the_parser_declares_every_flag_of_the_table_with_its_default():
    parser = serve_parser()
    declared = {action.dest: action for action in parser._actions if action.option_strings}
    assert set(declared) == {flag.name for flag in FLAGS} | {"help"}
    defaults = parser.parse_args([])
    assert {flag.name: getattr(defaults, flag.name) for flag in FLAGS} == {
        flag.name: flag.default for flag in FLAGS
    }


def sample(kind: str):
    return {"int32": ("7", 7), "int64": ("7", 7), "float": ("0.25", 0.25), "string": ("a=b,c", "a=b,c")}[kind]


@pytest.mark.parametrize("flag", FLAGS, ids=lambda flag: flag.name)
def test_every_flag_is_accepted_in_tf_servings_syntax(flag):
    parser = serve_parser()
    if flag.kind == "bool":
        spellings = {
            f"--{flag.name}": True,
            f"--{flag.name}=true": True,
            f"--{flag.name}=True": True,
            f"--{flag.name}=1": True,
            f"--{flag.name}=false": False,
            f"--{flag.name}=FALSE": False,
            f"--{flag.name}=0": False,
        }
        for argv, value in spellings.items():
            assert getattr(parser.parse_args([argv]), flag.name) is value, argv
    else:
        text, value = sample(flag.kind)
        assert getattr(parser.parse_args([f"--{flag.name}={text}"]), flag.name) == value
        assert getattr(parser.parse_args([f"--{flag.name}", text]), flag.name) == value  # argparse's too


def test_the_last_occurrence_of_a_flag_wins_as_with_the_docker_entrypoint():
    args = serve_parser().parse_args(
        ["--port=8500", "--model_name=model", "--port=9000", "--model_name=mine"]
    )
    assert (args.port, args.model_name) == (9000, "mine")


def assert_one_line_error(result, text: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and text in lines[0], result.stderr


def test_a_bad_boolean_is_tf_servings_message_in_one_line():
    assert_one_line_error(
        rnnserve("serve", "--enable_batching=yes"), "Couldn't interpret value yes for flag enable_batching."
    )


def test_an_unknown_flag_is_a_one_line_error():
    assert_one_line_error(
        rnnserve("serve", "--use_tflite_model=true"), "unrecognized arguments: --use_tflite_model=true"
    )


def test_version_prints_tf_servings_two_lines_and_exits_0():
    import tensorflow as tf

    result = rnnserve("serve", "--version")
    assert result.returncode == 0, result.stderr
    first, second = result.stdout.splitlines()
    assert re.fullmatch(r"TensorFlow ModelServer: \S+ \(rnnserve\)", first)
    assert second == f"TensorFlow Library: {tf.__version__}"


def test_a_malformed_model_config_file_fails_with_protobufs_text_format_line(tmp_path):
    config = tmp_path / "models.config"
    config.write_text('model_config_list { config { name: "m" foo: 1 } }')
    result = rnnserve("serve", f"--model_config_file={config}")
    assert_one_line_error(
        result,
        "Error parsing text-format tensorflow.serving.ModelServerConfig: 1:40: Message type "
        '"tensorflow.serving.ModelConfig" has no field named "foo".',
    )


@pytest.mark.parametrize(
    "flags, message",
    [
        (
            ["--batching_parameters_file=/b.config"],
            "server_options.batching_parameters_file is set without setting server_options.enable_batching to true.",
        ),
        (
            [
                "--tensorflow_session_parallelism=2",
                "--tensorflow_intra_op_parallelism=2",
                "--tensorflow_inter_op_parallelism=2",
            ],
            "You cannot configure all.",
        ),
        (
            ["--grpc_channel_arguments=grpc.max_connection_age_ms"],
            "'grpc.max_connection_age_ms' is not key=value.",
        ),
    ],
    ids=["batching file without batching", "all three parallelism flags", "channel argument without ="],
)
def test_option_errors_are_tf_servings_checks_in_one_line(tmp_path, flags, message):
    assert_one_line_error(rnnserve("serve", f"--model_base_path={tmp_path}", *flags), message)


def test_a_busy_port_is_one_line_before_any_model_loads(tf_models):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        for flags in ([f"--port={port}", "--rest_api_port=0"], ["--port=0", f"--rest_api_port={port}"]):
            result = rnnserve("serve", *flags, f"--model_name={HALF}", f"--model_base_path={tf_models[HALF]}")
            assert_one_line_error(result, "Failed to start server: UNAVAILABLE: ")
            assert "is the port in use? Pass another --" in result.stderr
            assert "Loading servable" not in result.stderr


def test_a_tf_serving_command_line_with_every_flag_serves(tmp_path, tf_models):
    """The image's entrypoint flags, then one of each flag (files only where they must exist)."""
    session_config = tmp_path / "session.config"
    session_config.write_text("intra_op_parallelism_threads: 1 inter_op_parallelism_threads: 1")
    values = {
        "port": "0",
        "grpc_socket_path": str(tmp_path / "grpc.sock"),
        "rest_api_port": str(free_port()),
        "model_name": HALF,
        "model_base_path": tf_models[HALF],
        "model_config_file": "",
        "batching_parameters_file": "",
        "ssl_config_file": "",
        "monitoring_config_file": "",
        "platform_config_file": "",
        "thread_pool_factory_config_file": "",
        "tensorflow_session_config_file": str(session_config),
        "tensorflow_session_parallelism": "0",
        "tensorflow_intra_op_parallelism": "1",
        "tensorflow_inter_op_parallelism": "1",
        "grpc_channel_arguments": "grpc.max_connection_age_ms=2000,grpc.lb_policy_name=grpclb",
        "saved_model_tags": "serve",
        "file_system_poll_wait_seconds": "1",
        "version": "false",
        "mixed_precision": "bfloat16",
        "per_process_gpu_memory_fraction": "0.5",
        "host": "127.0.0.1",
        "max_request_bytes": "1048576",
        "grpc_max_threads": "4",
        "rest_api_num_threads": "4",
        "max_num_load_retries": "1",
        "load_retry_interval_micros": "1000",
    }
    argv = []
    for flag in FLAGS:
        if flag.name in values:
            argv.append(f"--{flag.name}={values[flag.name]}")
        elif flag.kind == "bool":
            argv.append(f"--{flag.name}={'true' if flag.default else 'false'}")
        else:
            argv.append(f"--{flag.name}={flag.default}")
    process = ServerProcess(*argv)
    try:
        assert any("Serving gRPC on unix:" in line for line in process.lines)
        assert not any(re.search(r"Serving gRPC on [\d.]+:", line) for line in process.lines)  # socket only
        with grpc.insecure_channel(f"unix:{values['grpc_socket_path']}") as channel:
            request = predict_pb2.PredictRequest()
            request.model_spec.name = HALF
            to_tensor_proto(np.array([1.0, 2.0, 5.0], np.float32), out=request.inputs["x"])
            reply = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request, timeout=30)
        np.testing.assert_allclose(to_ndarray(reply.outputs["y"]), [2.5, 3.0, 4.5])
        process.wait_for_log("Not applicable on this server")
        applicable = [line for line in process.log if "Not applicable on this server" in line]
        assert len(applicable) == 1
        for flag in FLAGS:
            named = f"--{flag.name}" in applicable[0]
            assert named == (
                flag.scope in NOT_APPLICABLE_SCOPES
                and flag.name in ("mixed_precision", "per_process_gpu_memory_fraction")
            )
    finally:
        process.stop()


def test_docs_serving_md_lists_every_flag_of_the_table():
    with open(os.path.join(REPO_ROOT, "docs", "serving.md"), encoding="utf-8") as handle:
        docs = handle.read()
    assert [flag.name for flag in FLAGS if f"| `--{flag.name}` |" not in docs] == []
