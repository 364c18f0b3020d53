"""The training configuration: one typed record per task, every field a
flag whose `--help` line states its default; `--help` and argument errors
load no TensorFlow; config.json holds the record, old and new formats
resume, and `--resume` may change only what it documents."""

import dataclasses
import json
import subprocess
import sys

import pytest

from rnnserve.cli import main
from rnnserve.errors import UserError
from rnnserve.training.config import (
    CELL_NAMES,
    TASK_CONFIGS,
    CharLMConfig,
    HelloConfig,
    from_run_config,
    resume_fields,
    to_run_config,
    with_resume_overrides,
)
from tests.training.helpers import cli_env


def help_text(*command):
    result = subprocess.run(
        [sys.executable, "-m", "rnnserve", *command, "--help"], capture_output=True, text=True, env=cli_env()
    )
    assert result.returncode == 0, result.stderr
    return " ".join(result.stdout.split())  # argparse wraps lines


def test_cell_names_are_the_cells_of_models():
    from rnnserve.models import CELLS

    assert sorted(CELL_NAMES) == sorted(CELLS)


def test_every_task_has_a_config_and_the_task_reads_it():
    from rnnserve.training.tasks import TASKS

    assert sorted(TASK_CONFIGS) == sorted(TASKS)
    for name, task in TASKS.items():
        assert task.config_class is TASK_CONFIGS[name] and task.name == name


def test_help_shows_every_flag_with_its_default_in_words():
    text = help_text("train", "charlm")
    for expected in (
        "--units N size of each recurrent layer's state (Keras `units`) (default: 256)",
        "--layers N number of stacked recurrent layers (default: 1)",
        "--epochs N passes over the training data (default: 20)",
        "--batch-size N examples (sequences) per training batch (default: 32)",
        "--lr RATE learning rate of the optimizer (default: 0.002)",
        "--seq-len N tokens per training window (sequence length) (default: 64)",
        "(default: lstm)",
        "--prompt TEXT text the sample printed after every epoch starts from (default: 'The ')",
    ):
        assert expected in text
    for field in dataclasses.fields(CharLMConfig):
        assert "--" + field.name.replace("_", "-") + " " in text
    hello = help_text("train", "hello")
    assert "(default: rnn)" in hello and "(default: 8)" in hello and "(default: 0.1)" in hello


@pytest.mark.parametrize(
    "command",
    [
        ["train", "--help"],
        ["train", "charlm", "--help"],
        ["train", "charlm", "--units", "zero"],
        ["export", "--help"],
        ["--help"],
    ],
    ids=" ".join,
)
def test_help_and_argument_errors_load_no_tensorflow(command):
    """The parser is built and the answer given in a process that never imports
    TensorFlow or Keras (what makes `--help` answer in a fraction of a second)."""
    probe = (
        "import sys\n"
        "from rnnserve.cli import main\n"
        "try:\n"
        f"    main({command!r})\n"
        "except SystemExit:\n"
        "    pass\n"
        "heavy = sorted(m for m in ('tensorflow', 'keras') if m in sys.modules)\n"
        "print('HEAVY', heavy, file=sys.stderr)\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=cli_env())
    assert "HEAVY []" in result.stderr, result.stderr[-2000:]


def test_config_json_holds_the_config_and_reads_back():
    config = CharLMConfig(units=128, corpus="my.txt", time_budget=60.0)
    content = json.loads(json.dumps(to_run_config(config, {"builder": "language_model"}, {})))
    assert content["format"] == 2 and content["task"] == "charlm"
    assert content["train_config"] == dataclasses.asdict(config)
    assert from_run_config(content, "run") == config


def test_a_format_1_config_json_still_reads():
    """What earlier versions wrote: the same fields under "args"."""
    recorded = {
        "batch_size": 16, "batching": "sequential", "cell": "gru", "clip_norm": 1.0, "corpus": None,
        "dropout": 0.0, "embedding_dim": 64, "epochs": 3, "export_base": None, "layers": 2, "level": "char",
        "lr": 0.002, "max_vocab": None, "optimizer": "adam", "prompt": "The ", "sample_length": 200,
        "seed": 0, "seq_len": 32, "strategy": "default", "temperature": 0.8, "time_budget": None,
        "units": 32, "val_fraction": 0.1, "verbose": 2,
    }  # fmt: skip
    content = {"format": 1, "task": "charlm", "args": recorded, "model": {}, "task_options": {}}
    assert dataclasses.asdict(from_run_config(content, "run")) == recorded


def test_unknown_settings_or_formats_are_one_clear_error():
    with pytest.raises(
        UserError, match=r"run/config.json records settings this version does not know \(colour\)"
    ):
        from_run_config({"format": 2, "task": "hello", "train_config": {"colour": "red"}}, "run")
    with pytest.raises(UserError, match="not a training configuration this version can read"):
        from_run_config({"format": 9, "task": "hello"}, "run")


def test_resume_may_change_only_epochs_time_budget_export_base_and_verbose():
    assert resume_fields(HelloConfig) == ["epochs", "time_budget", "export_base", "verbose"]
    config = HelloConfig()
    assert with_resume_overrides(config, {"epochs": 40}).epochs == 40
    with pytest.raises(UserError, match=r"so --units cannot be given \(only --epochs, --time-budget"):
        with_resume_overrides(config, {"units": 3, "epochs": 40})


def _error_line(capsys):
    return [line for line in capsys.readouterr().err.splitlines() if line.strip()]


def test_resume_with_a_fixed_setting_is_one_line_through_the_cli(tmp_path, capsys):
    content = to_run_config(HelloConfig(), {"builder": "regressor"}, {})
    (tmp_path / "config.json").write_text(json.dumps(content))
    assert main(["train", "hello", "--resume", str(tmp_path), "--units", "3", "--verbose", "0"]) == 2
    [line] = _error_line(capsys)
    assert line.startswith("rnnserve train: error: --resume continues a run with the settings it was started")


@pytest.mark.parametrize("where", ["file", "file/run"])
def test_out_naming_a_file_is_one_line(where, tmp_path, capsys):
    (tmp_path / "file").write_text("not a directory\n")
    out = tmp_path / where
    assert main(["train", "hello", "--out", str(out), "--verbose", "0"]) == 2
    [line] = _error_line(capsys)
    assert line.startswith(f"rnnserve train: error: --out {out} ")
    assert "is a file, not a directory" in line
    assert (tmp_path / "file").read_text() == "not a directory\n"
