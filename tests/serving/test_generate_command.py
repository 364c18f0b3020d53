"""`rnnserve generate` with streaming, `--stop`, `--no-stream` and `--server-state`, as a user runs it.

Oracles: a client-held `Session`'s chunked `generate` calls decoded by the
model's `decode` signature (what `rnnserve generate` printed before the
server could stream, checked against the signatures in test_session.py),
cut before the first stop string by `str.find`; the server's own counters
(`:rnnserve:streams_total`, `:rnnserve:active_streams`, `live_sequences`)
for which way was taken and what Ctrl-C and the end of the command freed;
exit statuses and signals.
"""

import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import LM, REPO_ROOT
from test_sequence_limits import live_sequences
from test_streaming_api import LONG_LIMIT, metric, wait_until_idle
from test_streaming_api import long_lm as long_lm  # the fixtures of a server allowing long streams
from test_streaming_api import stream_server as stream_server

from rnnserve.cli import main
from rnnserve.serving.client import PredictionClient
from rnnserve.serving.session import Session

PROMPT = "the cat "


def chunked_text(server, count, chunk, temperature, seed=0) -> str:
    """The oracle: `count` tokens after PROMPT in `generate` calls of `chunk` tokens, decoded."""
    with PredictionClient(f"127.0.0.1:{server.grpc_port}", timeout=30) as client:
        session = Session(client, LM, seed=seed)
        session.feed_text(PROMPT)
        return "".join(
            session.decode(tokens)[0] for tokens in session.stream(count, chunk, temperature=temperature)
        )


def streams_total(server) -> float:
    return sum(
        metric(server, ":rnnserve:streams_total", model_name=LM, finish_reason=reason)
        for reason in ("length", "stop", "cancelled")
    )


def generate(capsys, server, *flags, rest=False):
    """(exit status, stdout, stderr) of `rnnserve generate` run in this process."""
    target = (
        ["--server", f"127.0.0.1:{server.rest_port}", "--rest"]
        if rest
        else ["--server", f"127.0.0.1:{server.grpc_port}"]
    )
    code = main(["generate", *target, "--model", LM, "--prompt", PROMPT, *flags])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("rest", [False, True], ids=["grpc", "rest"])
def test_generate_streams_when_offered_and_no_stream_prints_the_same_text(capsys, server, rest):
    flags = ["--max-new-tokens", "30", "--chunk", "8", "--temperature", "1.0", "--seed", "5"]
    expected = PROMPT + chunked_text(server, 30, 8, 1.0, seed=5) + "\n"
    before = streams_total(server)
    assert generate(capsys, server, *flags, rest=rest) == (0, expected, "")
    assert streams_total(server) == before + 4  # 8 + 8 + 8 + 6 tokens, each call streamed
    assert generate(capsys, server, *flags, "--no-stream", rest=rest) == (0, expected, "")
    assert streams_total(server) == before + 4


@pytest.mark.parametrize("no_stream", [[], ["--no-stream"]], ids=["streamed", "chunked"])
def test_stop_strings_end_the_text_just_before_the_first(capsys, server, no_stream):
    whole = chunked_text(server, 40, 6, 1.0)
    stops = [whole[20:23], whole[11:13], "not-in-the-text"]  # the second comes first; it spans two calls
    flags = ["--max-new-tokens", "40", "--chunk", "6", "--temperature", "1.0", *no_stream]
    for stop in stops:
        flags += ["--stop", stop]
    assert generate(capsys, server, *flags) == (0, PROMPT + whole[:11] + "\n", "")


@pytest.mark.parametrize("no_stream", [[], ["--no-stream"]], ids=["streamed", "chunked"])
def test_server_state_prints_the_client_held_text_and_frees_its_sequence(capsys, server, no_stream):
    flags = ["--max-new-tokens", "25", "--chunk", "7", "--temperature", "1.0", "--seed", "9", *no_stream]
    before = live_sequences(server)
    expected = generate(capsys, server, *flags)
    assert expected[0] == 0 and expected[1] == PROMPT + chunked_text(server, 25, 7, 1.0, seed=9) + "\n"
    assert generate(capsys, server, *flags, "--server-state") == expected
    assert live_sequences(server) == before


def test_an_empty_stop_string_is_one_line(capsys, server):
    code, out, err = generate(capsys, server, "--stop", "")
    assert (code, out) == (2, "")
    assert (
        err == "rnnserve generate: error: --stop must not be empty: give the text that ends the generation.\n"
    )


def test_ctrl_c_cancels_the_stream_on_the_server_and_ends_the_line(stream_server):
    """One long stream (the module's server allows LONG_LIMIT tokens a call), interrupted midway."""
    cancelled = metric(stream_server, ":rnnserve:streams_total", model_name=LM, finish_reason="cancelled")
    argv = ["--server", f"127.0.0.1:{stream_server.grpc_port}", "--model", LM, "--prompt", PROMPT]
    limit = str(LONG_LIMIT)
    process = subprocess.Popen(
        [sys.executable, "-m", "rnnserve", "generate", *argv, "--max-new-tokens", limit, "--chunk", limit],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=REPO_ROOT,
        env=dict(os.environ, PYTHONPATH=REPO_ROOT, TF_CPP_MIN_LOG_LEVEL="3"),
    )
    try:
        assert process.stdout.read(len(PROMPT) + 1).decode().startswith(PROMPT)  # the prompt, then text
        deadline = time.monotonic() + 60
        while metric(stream_server, ":rnnserve:active_streams", model_name=LM) < 1:
            assert time.monotonic() < deadline, "the command's stream never became active"
            time.sleep(0.01)
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 130
    assert out.endswith(b"\n") and err.decode().splitlines()[-1] == "rnnserve generate: interrupted"
    wait_until_idle(stream_server)
    assert (
        metric(stream_server, ":rnnserve:streams_total", model_name=LM, finish_reason="cancelled")
        == cancelled + 1
    )
