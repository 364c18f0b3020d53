"""The server's TF Serving flags at work: socket, health names, profiler, loading, warmup, tags.

Oracles: gRPC's own clients (a `unix:` channel, grpc_health's stub),
TensorFlow's profiler client (`tf.profiler.experimental.client.trace`, run in
another process, as TensorBoard's "Capture profile" does) and its XSpace
proto, TF Serving's log lines and messages (`util/retrier.cc`,
`file_system_storage_path_source.cc`, the TF loader's tag error).
"""

import os
import shutil
import subprocess
import sys
import threading

import grpc
import numpy as np
import pytest
from conftest import HALF, ServerProcess, start_server
from grpc_health.v1 import health_pb2, health_pb2_grpc
from serving_savedmodels import write_warmup_file
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc
from tf_serving_models import half_plus_two, write_half_plus_two

from rnnserve.cli import main
from rnnserve.serving.errors import ServingError
from rnnserve.serving.tensors import to_ndarray, to_tensor_proto


def predict_half_plus_two(channel, xs=(1.0, 2.0, 5.0), model=HALF):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    to_tensor_proto(np.array(xs, np.float32), out=request.inputs["x"])
    response = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request, timeout=30)
    return to_ndarray(response.outputs["y"])


@pytest.mark.parametrize(
    "service",
    [
        "",
        "PredictionService",
        "ModelService",
        "tensorflow.serving.PredictionService",
        "tensorflow.serving.ModelService",
    ],
)
def test_health_answers_tf_servings_names_and_the_full_ones(tf_server, service):
    with grpc.insecure_channel(f"127.0.0.1:{tf_server.grpc_port}") as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=service), timeout=10
        )
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_health_of_an_unknown_service_is_not_found(tf_server):
    with grpc.insecure_channel(f"127.0.0.1:{tf_server.grpc_port}") as channel:
        with pytest.raises(grpc.RpcError) as caught:
            health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service="nope"), timeout=10
            )
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


def test_predict_over_the_unix_socket_alone(tmp_path, tf_models):
    socket_path = str(tmp_path / "grpc.sock")
    server = start_server({HALF: tf_models[HALF]}, port=0, grpc_socket_path=socket_path, rest_api_port=None)
    try:
        assert server.grpc_port is None  # --port=0 with a socket: no TCP listener, as TF Serving
        with grpc.insecure_channel(f"unix:{socket_path}") as channel:
            np.testing.assert_allclose(predict_half_plus_two(channel), half_plus_two([1.0, 2.0, 5.0]))
    finally:
        server.stop(grace=1)


def test_enable_serialization_as_tensor_content_sends_tensor_content(tf_models):
    server = start_server({HALF: tf_models[HALF]}, tensor_content=True, rest_api_port=None)
    try:
        request = predict_pb2.PredictRequest()
        request.model_spec.name = HALF
        to_tensor_proto(np.array([1.0, 2.0], np.float32), out=request.inputs["x"])
        with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
            response = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request, timeout=30)
        y = response.outputs["y"]
        assert y.tensor_content and not y.float_val
        np.testing.assert_allclose(np.frombuffer(y.tensor_content, np.float32), [2.5, 3.0])
    finally:
        server.stop(grace=1)


TRACE_CLIENT = """
import sys, tensorflow as tf
tf.profiler.experimental.client.trace(sys.argv[1], sys.argv[2], int(sys.argv[3]))
"""


def xspace_event_names(logdir: str) -> dict:
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    names = {}
    for root, _, files in os.walk(logdir):
        for file in files:
            if not file.endswith(".xplane.pb"):
                continue
            space = xplane_pb2.XSpace()
            with open(os.path.join(root, file), "rb") as handle:
                space.ParseFromString(handle.read())
            for plane in space.planes:
                metadata = {key: value.name for key, value in plane.event_metadata.items()}
                for line in plane.lines:
                    for event in line.events:
                        name = metadata.get(event.metadata_id, "")
                        names[name] = names.get(name, 0) + 1
    return names


def test_a_profiler_trace_from_another_process_returns_the_served_models_events(tmp_path, tf_server):
    stop = threading.Event()

    def traffic():
        with grpc.insecure_channel(f"127.0.0.1:{tf_server.grpc_port}") as channel:
            while not stop.is_set():
                predict_half_plus_two(channel)

    worker = threading.Thread(target=traffic)
    worker.start()
    try:
        logdir = str(tmp_path / "logdir")
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
        result = subprocess.run(
            [sys.executable, "-c", TRACE_CLIENT, f"grpc://127.0.0.1:{tf_server.grpc_port}", logdir, "1500"],
            capture_output=True,
            text=True,
            timeout=180,
            env=env,
        )
    finally:
        stop.set()
        worker.join()
    assert result.returncode == 0, result.stderr[-3000:]
    names = xspace_event_names(logdir)
    assert sum(names.values()) > 0
    assert any("Mul" in name or "AddV2" in name for name in names), sorted(names)[:50]


def test_a_failed_load_is_retried_as_tf_servings_retrier_then_reported(tmp_path, caplog):
    base = tmp_path / "broken"
    (base / "1").mkdir(parents=True)
    (base / "1" / "saved_model.pb").write_bytes(b"not a SavedModel")
    caplog.set_level("INFO", logger="rnnserve.serving")
    with pytest.raises(ServingError) as caught:  # a model that never loads stops the start, as TF Serving's
        start_server({"broken": str(base)}, max_num_load_retries=2, load_retry_interval_seconds=0.01)
    assert caught.value.message == "Some models did not become available: {{name: broken version: 1}, }"
    messages = [record.getMessage() for record in caplog.records]
    description = "Loading servable: {name: broken version: 1}"
    assert sum(m.startswith(f"{description} failed: DATA_LOSS: ") for m in messages) == 3  # 1 + 2 retries
    assert f"Retrying of {description} retry: 1" in messages
    assert f"Retrying of {description} retry: 2" in messages
    assert f"Retrying of {description} exhausted max_num_retries: 2" in messages


def test_without_model_warmup_a_failing_warmup_file_is_not_replayed(tmp_path, tf_models):
    base = str(tmp_path / HALF)
    shutil.copytree(tf_models[HALF], base)
    bad = predict_pb2.PredictRequest()
    bad.model_spec.name = HALF
    to_tensor_proto(np.array([1.0], np.float32), out=bad.inputs["nope"])
    write_warmup_file(os.path.join(base, "123", "assets.extra", "tf_serving_warmup_requests"), [bad])
    with pytest.raises(ServingError, match="Some models did not become available"):
        start_server({HALF: base}, rest_api_port=None)  # the warmup replay fails the load
    cold = start_server({HALF: base}, enable_model_warmup=False, rest_api_port=None)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{cold.grpc_port}") as channel:
            np.testing.assert_allclose(predict_half_plus_two(channel, [4.0]), [4.0])
    finally:
        cold.stop(grace=1)


def test_saved_model_tags_choose_the_metagraph(tmp_path, caplog):
    base = str(tmp_path / "tagged")
    write_half_plus_two(base, 1, tags=("serve", "gpu"))
    with pytest.raises(ServingError, match="Some models did not become available"):
        start_server({"tagged": base}, rest_api_port=None)  # no MetaGraphDef tagged exactly {serve}
    tagged = start_server({"tagged": base}, saved_model_tags=("serve", "gpu"), rest_api_port=None)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{tagged.grpc_port}") as channel:
            np.testing.assert_allclose(predict_half_plus_two(channel, [0.0], model="tagged"), [2.0])
        assert any("could not be found in SavedModel" in record.getMessage() for record in caplog.records)
    finally:
        tagged.stop(grace=1)


def test_a_version_directory_as_base_path_is_tf_servings_warning_with_a_hint_and_status_says_why(
    tf_models, capsys
):
    version_dir = os.path.join(tf_models[HALF], "123")
    process = ServerProcess(f"--model_name={HALF}", f"--model_base_path={version_dir}")
    try:
        warning = (
            f"No versions of servable {HALF} found under base path {version_dir}. "
            "Did you forget to name your leaf directory as a number (eg. '/1/')?"
        )
        process.wait_for_log(warning)
        hint = f"{version_dir} looks like a version directory; pass its parent {tf_models[HALF]} as the base path."
        process.wait_for_log(hint)
        code = main(["status", "--server", f"127.0.0.1:{process.grpc_port}", "--model", HALF])
        err = capsys.readouterr().err
        assert code != 0 and hint in err and "Traceback" not in err, err
    finally:
        process.stop()


def test_per_model_batching_parameters_give_a_version_its_own_batch_queue(tmp_path, tf_models):
    from rnnserve.serving.config_protos import BatchingParameters

    base = str(tmp_path / HALF)
    shutil.copytree(tf_models[HALF], base)
    with open(os.path.join(base, "123", "batching_params.pbtxt"), "w") as handle:
        handle.write('max_batch_size { value: 8 } thread_pool_name { value: "half_plus_two_pool" }')
    server = start_server(
        {HALF: base}, batching=BatchingParameters(), per_model_batching=True, rest_api_port=None
    )
    try:
        with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
            np.testing.assert_allclose(predict_half_plus_two(channel, [2.0]), [3.0])
        page = server.metrics.page().decode()
        assert 'processed_batch_size_count{thread_pool_name="half_plus_two_pool"} 1.0' in page
    finally:
        server.stop(grace=1)


def test_num_load_threads_loads_every_model(tf_models):
    server = start_server(tf_models, num_load_threads=2, num_unload_threads=2, rest_api_port=None)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
            np.testing.assert_allclose(predict_half_plus_two(channel, [2.0]), [3.0])
            np.testing.assert_allclose(predict_half_plus_two(channel, [2.0], model="tf2_signatures"), [3.0])
    finally:
        server.stop(grace=1)


def test_a_rest_port_equal_to_the_grpc_port_skips_rest_with_tf_servings_error(tf_models, caplog):
    from conftest import free_port

    port = free_port()
    server = start_server({HALF: tf_models[HALF]}, port=port, rest_api_port=port)
    try:
        assert (server.grpc_port, server.rest_port) == (port, None)
        assert any(
            "server_options.http_port cannot be same as grpc_port" in record.getMessage()
            for record in caplog.records
        )
    finally:
        server.stop(grace=1)


def test_num_request_iterations_for_warmup_runs_each_record_that_many_times(tmp_path, tf_models):
    from rnnserve.serving.servable import Servable
    from rnnserve.serving.warmup import run_warmup

    base = str(tmp_path / HALF)
    shutil.copytree(tf_models[HALF], base)
    request = predict_pb2.PredictRequest()
    request.model_spec.name = HALF
    to_tensor_proto(np.array([1.0], np.float32), out=request.inputs["x"])
    write_warmup_file(os.path.join(base, "123", "assets.extra", "tf_serving_warmup_requests"), [request] * 2)
    servable = Servable(HALF, 123, os.path.join(base, "123"))
    runs = []
    run = servable.run
    servable.run = lambda *args, **kwargs: runs.append(args[0]) or run(*args, **kwargs)
    try:
        assert run_warmup(servable, iterations=3) == 2  # records read, as TF Serving logs them
        assert len(runs) == 6
    finally:
        servable.close()


def test_the_profiler_service_is_there_only_with_enable_profiler(tf_models, tf_server):
    def call(port: int, method: str):
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            with pytest.raises(grpc.RpcError) as caught:
                channel.unary_unary(f"/tensorflow.ProfilerService/{method}")(b"", timeout=10)
        return caught.value.code(), caught.value.details()

    unimplemented = grpc.StatusCode.UNIMPLEMENTED
    assert call(tf_server.grpc_port, "Monitor") == (unimplemented, "Method not implemented")  # served
    server = start_server({HALF: tf_models[HALF]}, enable_profiler=False, rest_api_port=None)
    try:
        assert call(server.grpc_port, "Profile") == (
            unimplemented,
            "Method not found!",
        )  # gRPC: no such service
    finally:
        server.stop(grace=1)
