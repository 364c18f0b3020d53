"""The client commands in the client-only install, run as a user runs them.

`rnnserve generate|predict|status|metadata` against a real server (gRPC and
`--rest`), the top-level help, and the one-line errors: a command of the
full install, a gRPC client on the REST port, a prompt with characters the
model does not know, a server error after the prompt was printed. Oracles:
the server's own signatures (`generate_text`, `decode`) and the messages the
commands promise.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from rnnserve import contract
from rnnserve.cli import COMMANDS, main


def _run(tmp_path, *argv: str, merged: bool = False) -> subprocess.CompletedProcess:
    """`python -m rnnserve ARGV` outside the checkout (so the installed package is what runs)."""
    return subprocess.run(
        [sys.executable, "-m", "rnnserve", *argv],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT if merged else subprocess.PIPE,
        text=True,
        timeout=120,
    )


@pytest.fixture(params=["grpc", "rest"])
def server_flags(request, grpc_target, rest_target, model):
    """`--server ... --model ...`, once for gRPC and once with `--rest`."""
    if request.param == "grpc":
        return ["--server", grpc_target, "--model", model]
    return ["--server", rest_target, "--rest", "--model", model]


def test_help_lists_every_command_without_importing_tensorflow(tmp_path):
    code = "import sys; from rnnserve.cli import main; main(['--help']); print(sorted(m for m in sys.modules if m.startswith(('tensorflow', 'keras'))))"
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    for name, command in COMMANDS.items():
        assert f"  {name}" in result.stdout and command.help in result.stdout
    assert result.stdout.strip().endswith("[]")


@pytest.mark.parametrize(
    "argv", [["train", "charlm"], ["serve", "--model_base_path", "x"], ["export", "--help"]]
)
def test_a_full_install_command_says_which_extra_to_install(tmp_path, argv):
    result = _run(tmp_path, *argv)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith(f"rnnserve {argv[0]}: error: ")
    assert "pip install 'rnnserve[full]'" in result.stderr


def test_status(capsys, server_flags):
    assert main(["status", *server_flags]) == 0
    assert capsys.readouterr().out == "version 1: AVAILABLE\n"


def test_metadata(capsys, server_flags, model):
    assert main(["metadata", *server_flags]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"model {model} version 1"
    for name in contract.LANGUAGE_MODEL_SIGNATURES:
        assert f"signature {name} (tensorflow/serving/predict)" in out
    assert "  input  tokens: int32 (?, ?)" in out
    assert "  input  prompt: string (?)" in out


def test_predict_prints_json_outputs(capsys, server_flags, grpc_client, model):
    argv = ["predict", *server_flags, "--signature", "decode", "--input", "tokens=[[20, 8, 5]]", "--json"]
    assert main(argv) == 0
    expected = grpc_client.predict(model, {"tokens": np.array([[20, 8, 5]], np.int32)}, "decode")["text"]
    assert json.loads(capsys.readouterr().out) == {"text": [expected[0].decode()]}


def test_generate_streams_the_prompt_and_its_greedy_continuation(capsys, server_flags, grpc_client, model):
    argv = ["generate", *server_flags, "--prompt", "the ", "--temperature", "0", "--max-new-tokens", "20"]
    assert main([*argv, "--chunk", "6"]) == 0
    inputs = {
        contract.PROMPT: np.array([b"the "], dtype=object),
        contract.MAX_NEW_TOKENS: np.int32(20),
        contract.TEMPERATURE: np.float32(0.0),
        contract.TOP_K: np.int32(0),
        contract.SEED: np.int64(0),
    }
    text = grpc_client.predict(model, inputs, contract.GENERATE_TEXT)[contract.TEXT][0].decode()
    captured = capsys.readouterr()
    assert captured.out == f"the {text}\n"
    assert captured.err == ""


def test_generate_reports_unknown_prompt_characters_once(capsys, grpc_target, model):
    argv = [
        "generate",
        "--server",
        grpc_target,
        "--model",
        model,
        "--prompt",
        "Thé thé",
        "--max-new-tokens",
        "3",
    ]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert captured.err == (
        "rnnserve generate: note: the model's vocabulary has no 'T', 'é'; the prompt feeds them as [UNK].\n"
    )
    assert captured.out.startswith("Thé thé")


def test_a_server_error_after_the_prompt_starts_on_its_own_line(tmp_path, grpc_target, model):
    # The model caps one generate call (64 tokens here); a 100-token chunk is refused.
    argv = ["--server", grpc_target, "--model", model, "--prompt", "the ", "--max-new-tokens", "100"]
    result = _run(tmp_path, "generate", *argv, "--chunk", "100", merged=True)
    assert result.returncode == 2
    lines = result.stdout.splitlines()
    assert lines[0] == "the "
    assert lines[1].startswith(f"rnnserve generate: error: {grpc_target}: INVALID_ARGUMENT: ")
    assert len(lines) == 2 and "Traceback" not in result.stdout


def test_the_grpc_client_on_the_rest_port_gets_one_line(tmp_path, rest_target, model):
    result = _run(tmp_path, "status", "--server", rest_target, "--model", model)
    assert result.returncode == 2
    assert result.stderr == (
        f"rnnserve status: error: {rest_target}: this is an HTTP port; use --rest or the gRPC port.\n"
    )


def test_the_rest_client_on_the_grpc_port_gets_one_line(tmp_path, grpc_target, model):
    result = _run(tmp_path, "status", "--rest", "--server", grpc_target, "--model", model)
    assert result.returncode == 2
    assert result.stderr == (
        f"rnnserve status: error: {grpc_target}: this is not an HTTP port (gRPC?); drop --rest or use the REST port.\n"
    )


def test_a_word_level_prompt_counts_its_unknown_words():
    from rnnserve.serving.cli_client import unknown_prompt_note

    # Three words, two of them [UNK] (id 0): the characters cannot be named, the words are counted.
    assert unknown_prompt_note("the zyzzyva quux", [4, 0, 0]) == (
        "2 words of the prompt are not in the model's vocabulary; they are fed as [UNK]."
    )
    assert unknown_prompt_note("the cat", [4, 9]) is None


def test_generate_server_state_and_no_stream_print_the_streamed_client_held_text(tmp_path, server_flags):
    """`--server-state` (the server keeps the state), `--no-stream` (generate calls) and the default
    (streamed, client-held) are three ways to the same text, as a user runs them."""
    argv = [*server_flags, "--prompt", "the ", "--max-new-tokens", "20", "--chunk", "6", "--temperature", "1"]
    runs = [_run(tmp_path, "generate", *argv, *extra) for extra in ([], ["--server-state"], ["--no-stream"])]
    for result in runs:
        assert result.returncode == 0 and result.stderr == "", result.stderr
    assert runs[0].stdout.startswith("the ") and len(runs[0].stdout) > len("the \n")
    assert runs[1].stdout == runs[0].stdout == runs[2].stdout


def test_generate_stop_ends_the_text_before_the_stop_string(capsys, server_flags):
    argv = ["generate", *server_flags, "--prompt", "the ", "--max-new-tokens", "30", "--temperature", "1"]
    assert main(argv) == 0
    whole = capsys.readouterr().out[len("the ") : -1]
    stop = whole[9:11]
    assert main([*argv, "--stop", stop, "--server-state"]) == 0
    assert capsys.readouterr().out == "the " + whole[: whole.find(stop)] + "\n"
