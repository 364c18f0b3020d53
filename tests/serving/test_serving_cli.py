"""`rnnserve serve | predict | status | metadata | generate` as a user runs them.

The streaming `generate` and the SIGTERM shutdown run as real subprocesses;
the other commands run through `rnnserve.cli.main` in-process (same code,
no 5-second TensorFlow import per call). Oracles: direct SavedModel calls,
the contract's signature table, exit codes and signals.
"""

import json
import os
import signal
import threading
import time

import numpy as np
import pytest
from conftest import LM, ServerProcess, rnnserve
from serving_savedmodels import STATE_SIZE, write_gate_model

from rnnserve.cli import main
from rnnserve.serving.client import PredictionClient
from rnnserve.serving.errors import ServingError


def greedy_text(direct, prompt: str, count: int) -> str:
    return direct(
        "generate_text",
        prompt=np.array([prompt.encode()]),
        max_new_tokens=np.int32(count),
        temperature=np.float32(0),
        top_k=np.int32(0),
        seed=np.int64(0),
    )["text"][0].decode()


def run_cli(capsys, *args):
    """(exit status, stdout, stderr) of `rnnserve ARGS` run in this process."""
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_generate_subprocess_streams_the_same_text_as_one_greedy_generate_text(server_process, direct):
    result = rnnserve(
        "generate",
        "--server",
        f"127.0.0.1:{server_process.grpc_port}",
        "--model",
        LM,
        "--prompt",
        "hello wor",
        "--max-new-tokens",
        "20",
        "--temperature",
        "0",
        "--chunk",
        "6",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "hello wor" + greedy_text(direct, "hello wor", 20) + "\n"


def test_generate_over_rest(server, direct, capsys):
    code, out, _ = run_cli(
        capsys,
        "generate",
        "--server",
        f"127.0.0.1:{server.rest_port}",
        "--rest",
        "--model",
        LM,
        "--prompt",
        "abc",
        "--max-new-tokens",
        "9",
        "--temperature",
        "0",
        "--chunk",
        "4",
    )
    assert (code, out) == (0, "abc" + greedy_text(direct, "abc", 9) + "\n")


def test_predict_status_and_metadata_commands(server, direct, capsys):
    target = f"127.0.0.1:{server.grpc_port}"
    code, out, err = run_cli(
        capsys, "predict", "--server", target, "--model", LM, "--input", "tokens=[[3,4]]", "--json"
    )
    assert code == 0, err
    expected = direct("serving_default", tokens=np.array([[3, 4]], np.int32))["logits"]
    np.testing.assert_allclose(np.array(json.loads(out)["logits"]), expected, rtol=1e-5, atol=1e-6)
    assert run_cli(capsys, "status", "--server", target, "--model", LM)[:2] == (0, "version 1: AVAILABLE\n")
    code, out, _ = run_cli(capsys, "metadata", "--server", target, "--model", LM)
    assert code == 0
    assert f"  input  state: float32 (?, {STATE_SIZE})" in out
    assert "signature generate (tensorflow/serving/predict)" in out


def test_user_errors_are_one_line_and_exit_2(server, capsys):
    target = f"127.0.0.1:{server.grpc_port}"
    code, _, err = run_cli(capsys, "status", "--server", target, "--model", "nope")
    assert (code, err) == (
        2,
        f"rnnserve status: error: {target}: NOT_FOUND: Could not find any versions of model nope\n",
    )
    code, _, err = run_cli(capsys, "predict", "--server", target, "--model", LM, "--input", "tokns=[[1]]")
    assert code == 2 and "the signature has no such input" in err
    code, _, err = run_cli(capsys, "generate", "--server", target, "--model", LM, "--prompt", "")
    assert code == 2 and "--prompt must not be empty" in err
    code, _, err = run_cli(capsys, "serve", "--model_config_file", "/nonexistent.config")
    assert code == 2 and err.count("\n") == 1
    assert "--model_config_file file '/nonexistent.config' cannot be read" in err


def wait_for_file(path, timeout=120) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.01)


def test_sigterm_lets_in_flight_calls_finish_refuses_new_ones_then_exits_0(tmp_path):
    """A call held inside the model (`Gate`) is in flight when SIGTERM arrives, and stays so until released."""
    write_gate_model(str(tmp_path / "gate"), 1)
    process = ServerProcess("--model_name", "gate", "--model_base_path", str(tmp_path / "gate"))
    started, release = tmp_path / "started", tmp_path / "release"
    inputs = {
        "started": np.array(str(started).encode(), object),
        "release": np.array(str(release).encode(), object),
    }
    results, errors = [], []

    def held_call():
        try:
            results.append(
                PredictionClient(f"127.0.0.1:{process.grpc_port}", timeout=120).predict("gate", inputs)
            )
        except ServingError as error:
            errors.append(error)

    thread = threading.Thread(target=held_call)
    try:
        thread.start()
        wait_for_file(started)  # the call is running in the server, held until `release` exists
        process.process.send_signal(signal.SIGTERM)
        process.wait_for_log("Shutting down: new calls are refused")
        with pytest.raises(ServingError) as refused:
            PredictionClient(f"127.0.0.1:{process.grpc_port}", timeout=10).status("gate")
        # gRPC refuses a call after stop() with GOAWAY (UNAVAILABLE), or, when
        # the call's stream reached the server first, by cancelling it.
        assert refused.value.code in ("UNAVAILABLE", "CANCELLED", "DEADLINE_EXCEEDED")
        assert not results and not errors  # still held
    finally:
        release.touch()
        thread.join(timeout=120)
    assert process.process.wait(timeout=60) == 0
    assert errors == [] and results[0]["polls"] > 0
    assert "Server stopped." in process.output()[0]


def threads_taking(pid: int, signum: int) -> list[int]:
    """Ids of the threads of process `pid`, other than its main thread, that do not block `signum` (Linux /proc)."""
    taking = []
    for tid in map(int, os.listdir(f"/proc/{pid}/task")):
        try:
            with open(f"/proc/{pid}/task/{tid}/status") as status:
                blocked = int(next(line for line in status if line.startswith("SigBlk:")).split()[1], 16)
        except FileNotFoundError:  # the thread ended after listdir
            continue
        if tid != pid and not blocked >> (signum - 1) & 1:
            taking.append(tid)
    return taking


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_delivered_to_a_worker_thread_still_stops_the_server(tmp_path, signum):
    """The kernel may hand a process's signal to any thread that does not block it; kill(2) on
    a thread's id hands it to that thread. Python runs handlers on the main thread only."""
    write_gate_model(str(tmp_path / "gate"), 1)
    process = ServerProcess("--model_name", "gate", "--model_base_path", str(tmp_path / "gate"))
    try:
        workers = threads_taking(process.process.pid, signum)
        assert workers, "every thread but the main one blocks the signal"
        os.kill(workers[0], signum)
        assert process.process.wait(timeout=60) == 0
    finally:
        process.stop()
    assert "Server stopped." in process.output()[0]
    assert f"Received signal {int(signum)}" in process.output()[1]


def test_serve_prints_no_tensorflow_deprecation_warning(exports):
    """TF Serving's loader is TensorFlow's deprecated TF1 one; its warning says nothing to a server's user."""
    process = ServerProcess("--model_name", LM, "--model_base_path", exports[LM])
    process.stop()
    _, log = process.output()
    assert "is deprecated" not in log and "Instructions for updating" not in log, log


@pytest.mark.parametrize(
    "flag, value, message",
    [
        ("--grpc_max_threads", "0", "--grpc_max_threads must be at least 1, got 0."),
        ("--rest_api_num_threads", "0", "--rest_api_num_threads must be at least 1, got 0."),
        ("--rest_api_timeout_in_ms", "-1", "--rest_api_timeout_in_ms must be at least 0, got -1."),
        (
            "--file_system_poll_wait_seconds",
            "-1",
            "--file_system_poll_wait_seconds must be at least 0, got -1.0.",
        ),
        (
            "--model_config_file_poll_wait_seconds",
            "nan",
            "--model_config_file_poll_wait_seconds must be at least 0, got nan.",
        ),
        (
            "--tensorflow_intra_op_parallelism",
            "-2",
            "--tensorflow_intra_op_parallelism must be at least 0, got -2.",
        ),
        ("--port", "70000", "--port must be in [0, 65535], got 70000."),
        ("--max_request_bytes", "10", "--max_request_bytes must be at least 1024, got 10."),
    ],
)
def test_serve_rejects_out_of_range_numbers_in_one_line_before_reading_any_file(capsys, flag, value, message):
    # The config file does not exist: a number that slipped through would fail on it instead.
    code, out, err = run_cli(capsys, "serve", "--model_config_file", "/nonexistent.config", flag, value)
    assert (code, out, err) == (2, "", f"rnnserve serve: error: {message}\n")
