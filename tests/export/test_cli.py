"""`rnnserve export --run` and `rnnserve inspect`, run as a user runs them.

`inspect` must print the SignatureDefs exactly as TensorFlow's own
`saved_model_cli show --all` does, then the rnnserve metadata. User errors
are one line on stderr and exit status 2.
"""

import json
import subprocess
import sys

import keras
import pytest

from rnnserve.models import build_language_model
from rnnserve.training.vocab import Vocabulary
from tests.export.artifacts import (
    CORPUS,
    REPO_ROOT,
    build_once,
    run_rnnserve,
    shared_root,
    user_error_line,
    write_run,
)


def _export_through_the_cli(path):
    keras.utils.set_random_seed(2)
    vocabulary = Vocabulary.build(CORPUS)
    write_run(
        path / "run", build_language_model(len(vocabulary), cell="rnn", units=4, embedding_dim=3), vocabulary
    )
    result = run_rnnserve(
        "export", "--run", path / "run", "--export-base", path / "base", "--max-new-tokens-limit", 64
    )
    (path / "result.json").write_text(json.dumps([result.returncode, result.stdout, result.stderr]))


@pytest.fixture
def exported(tmp_path_factory):
    """A run exported once through the CLI: `(run_dir, base, (returncode, stdout, stderr))`."""
    path = build_once(shared_root(tmp_path_factory), "cli-export", _export_through_the_cli)
    return path / "run", path / "base", json.loads((path / "result.json").read_text())


def test_export_prints_the_new_version_and_shows_progress(exported):
    _, base, (returncode, stdout, stderr) = exported
    assert returncode == 0, stderr
    assert stdout.strip() == str(base / "1")
    assert "export [" in stderr and "publish version" in stderr
    with open(base / "1" / "assets.extra" / "rnnserve.json", encoding="utf-8") as f:
        assert json.load(f)["max_new_tokens_limit"] == 64


def test_inspect_prints_the_signatures_like_saved_model_cli_and_the_metadata(exported):
    _, base, _ = exported
    ours = run_rnnserve("inspect", base)
    assert ours.returncode == 0, ours.stderr
    theirs = subprocess.run(
        [
            sys.executable,
            "-m",
            "tensorflow.python.tools.saved_model_cli",
            "show",
            "--dir",
            base / "1",
            "--all",
        ],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=600,
    )
    assert theirs.returncode == 0, theirs.stderr
    expected = theirs.stdout.split("The MetaGraph with tag set")[0].strip()
    shown = ours.stdout.split("rnnserve metadata")[0].strip()
    assert shown.splitlines()[0] == f"SavedModel {base / '1'} (versions in {base}: 1)"
    assert "\n".join(shown.splitlines()[1:]).strip() == expected
    metadata = json.loads(ours.stdout.split("rnnserve metadata (assets.extra/rnnserve.json):")[1])
    assert (metadata["cell"], metadata["layers"], metadata["units"], metadata["state_size"]) == (
        "rnn",
        1,
        4,
        4,
    )


def test_a_taken_version_is_one_line_and_exit_status_2(exported):
    run_dir, base, _ = exported
    line = user_error_line(run_rnnserve("export", "--run", run_dir, "--export-base", base, "--version", 1))
    assert (
        line
        == f"rnnserve export: error: version 1 already exists in {base}; pass another --version or omit it."
    )


def test_a_missing_keras_model_and_a_non_export_are_user_errors(tmp_path):
    line = user_error_line(
        run_rnnserve("export", "--keras-model", tmp_path / "x.keras", "--export-base", tmp_path)
    )
    assert (
        line
        == f"rnnserve export: error: {tmp_path / 'x.keras'} does not exist; pass a Keras model file (.keras or .h5)."
    )
    line = user_error_line(run_rnnserve("inspect", tmp_path))
    assert line.startswith(f"rnnserve inspect: error: {tmp_path} is neither a SavedModel directory")


def test_a_file_where_a_directory_belongs_is_auser_error_line(exported, tmp_path):
    run_dir, _, _ = exported
    not_a_directory = tmp_path / "file.txt"
    not_a_directory.write_text("x")
    expected = f"{not_a_directory} is a file, not a directory of SavedModel versions."
    line = user_error_line(run_rnnserve("inspect", not_a_directory))
    assert line == f"rnnserve inspect: error: {expected}"
    for version in ([], ["--version", 3]):
        line = user_error_line(
            run_rnnserve("export", "--run", run_dir, "--export-base", not_a_directory, *version)
        )
        assert line == f"rnnserve export: error: {expected[:-1]}; pass another --export-base."
