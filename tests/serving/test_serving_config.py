"""Flags and TF Serving's text-proto config files, parsed by protobuf.

Oracles: the proto field definitions (a file TF Serving accepts parses
here, field for field) and the one-line ConfigError contract.
"""

import argparse

import pytest

from rnnserve.serving.config import add_server_flags, options_from_flags
from rnnserve.serving.errors import ConfigError


def parse(*argv):
    parser = argparse.ArgumentParser()
    add_server_flags(parser)
    return options_from_flags(parser.parse_args(list(argv)))


def test_defaults_mirror_tensorflow_model_server(tmp_path):
    options = parse("--model_base_path", str(tmp_path))
    (model,) = options.model_config.model_config_list.config
    assert (model.name, model.base_path, model.model_platform) == ("default", str(tmp_path), "tensorflow")
    assert (options.host, options.port, options.rest_api_port) == ("127.0.0.1", 8500, 8501)
    assert options.file_system_poll_wait_seconds == 1 and options.batching is None
    assert parse("--model_base_path", str(tmp_path), "--rest_api_port", "0").rest_api_port is None  # 0 = off


def test_all_config_files(tmp_path):
    files = {
        "models": 'model_config_list { config { name: "a" base_path: "/m/a" model_platform: "tensorflow" '
        'model_version_policy { specific { versions: 2 } } version_labels { key: "stable" value: 2 } } }',
        "ssl": 'server_key: "KEY" server_cert: "CERT" custom_ca: "CA" client_verify: true',
        "monitoring": "prometheus_config { enable: true }",
        "batching": "max_batch_size { value: 16 } batch_timeout_micros { value: 500 } allowed_batch_sizes: 16",
    }
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    options = parse(
        "--model_config_file",
        str(tmp_path / "models"),
        "--ssl_config_file",
        str(tmp_path / "ssl"),
        "--monitoring_config_file",
        str(tmp_path / "monitoring"),
        "--enable_batching",
        "--batching_parameters_file",
        str(tmp_path / "batching"),
    )
    (model,) = options.model_config.model_config_list.config
    assert list(model.model_version_policy.specific.versions) == [2] and model.version_labels["stable"] == 2
    assert (options.ssl.server_key, options.ssl.custom_ca, options.ssl.client_verify) == ("KEY", "CA", True)
    assert options.prometheus_path == "/monitoring/prometheus/metrics"  # TF Serving's default path
    assert options.batching.max_batch_size.value == 16


@pytest.mark.parametrize(
    "flag, text, message",
    [
        (
            "--model_config_file",
            "model_config_list { config { name: 3 } }",
            "Error parsing text-format tensorflow.serving.ModelServerConfig: 1:36: ",
        ),
        (
            "--model_config_file",
            'model_config_list { config { name: "a" base_path: "/a" } }',
            "model_platform",
        ),
        (
            "--model_config_file",
            'model_config_list { config { name: "a" base_path: "/a" model_platform: "tensorflow" } '
            'config { name: "a" base_path: "/b" model_platform: "tensorflow" } }',
            "Illegal to list model a multiple times in config list",
        ),
        (
            "--batching_parameters_file",
            "max_batch_size { value: 8 } allowed_batch_sizes: 4",
            "must equal max_batch_size",
        ),
        (
            "--batching_parameters_file",
            "max_batch_size { value: 8 } enable_large_batch_splitting { value: true } "
            "max_execution_batch_size { value: 4 }",
            "max_execution_batch_size must equal max_batch_size",
        ),
        ("--ssl_config_file", 'server_key: "only the key"', "must set both server_key and server_cert"),
        (
            "--monitoring_config_file",
            "prometheus_config { enable: maybe }",
            "Error parsing text-format tensorflow.serving.MonitoringConfig: 1:29: ",
        ),
    ],
)
def test_bad_files_are_one_line_user_errors_naming_the_flag(tmp_path, flag, text, message):
    path = tmp_path / "file.config"
    path.write_text(text)
    argv = ["--model_base_path", str(tmp_path)] if flag != "--model_config_file" else []
    argv += [flag, str(path)] + (["--enable_batching"] if flag == "--batching_parameters_file" else [])
    with pytest.raises(ConfigError) as caught:
        parse(*argv)
    assert message in str(caught.value) and "\n" not in str(caught.value)
    assert (
        flag in str(caught.value) or "Illegal" in str(caught.value) or "model_platform" in str(caught.value)
    )


def test_nothing_to_serve_is_a_user_error():
    with pytest.raises(ConfigError, match="Nothing to serve"):
        parse()


@pytest.mark.parametrize(
    "text",
    [
        "max_batch_size { value: 8 } max_execution_batch_size { value: 4 }",  # read only when splitting
        "max_batch_size { value: 8 } enable_large_batch_splitting { value: true } "
        "max_execution_batch_size { value: 8 }",  # the default: batches of up to max_batch_size
    ],
)
def test_max_execution_batch_size_is_accepted_where_it_changes_nothing(tmp_path, text):
    path = tmp_path / "batching.config"
    path.write_text(text)
    options = parse(
        "--model_base_path", str(tmp_path), "--enable_batching", "--batching_parameters_file", str(path)
    )
    assert options.batching.max_batch_size.value == 8
