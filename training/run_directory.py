"""`RunDirectory`: one training run on disk (layout in docs/run-directory.md).

Every file is written atomically, so a run killed at any instant (even by
SIGKILL) leaves whole files behind: checkpoints are written under a temporary
name and renamed to `checkpoints/epoch-NNNN.keras`, whose number *is* the
record of how many epochs are done, and `--resume` continues from the highest
one. At most one epoch of work is lost.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import keras

from rnnserve.errors import UserError
from rnnserve.training.files import atomic_write_json, create_temp_file, fsync_directory, read_json

CHECKPOINT_RE = re.compile(r"^epoch-(\d{4,})\.keras$")
KEEP_CHECKPOINTS = 2


def atomic_save_keras(model, path):
    """`model.save(path)` through a temporary file and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = create_temp_file(path.parent, prefix=f".{path.stem}.", suffix=".keras")
    os.close(fd)
    try:
        model.save(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    fsync_directory(path.parent)


class RunDirectory:
    """The files of one run.

    Args:
        path: The run directory.

    Example:

    ```python
    run = RunDirectory.create("runs/charlm-1", {"task": "charlm"})
    run.save_checkpoint(model, epoch=1)
    run.latest_checkpoint()
    # (1, PosixPath('runs/charlm-1/checkpoints/epoch-0001.keras'))
    ```
    """

    def __init__(self, path):
        self.path = Path(path)

    config_path = property(lambda self: self.path / "config.json")
    vocab_path = property(lambda self: self.path / "vocab.json")
    model_path = property(lambda self: self.path / "model.keras")
    metrics_path = property(lambda self: self.path / "metrics.json")
    checkpoints = property(lambda self: self.path / "checkpoints")
    tensorboard = property(lambda self: self.path / "tensorboard")
    curves_path = property(lambda self: self.path / "curves.png")

    @staticmethod
    def default_path(task):
        return Path("runs") / f"{task}-{time.strftime('%Y%m%d-%H%M%S')}"

    @classmethod
    def create(cls, path, config, vocab=None):
        """Starts a new run; refuses a directory that already holds one.

        The vocabulary is written first and config.json last: a directory
        with a config.json is a complete description of its run.
        """
        run = cls.check_new(path)
        try:
            run.path.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise UserError(f"cannot create the run directory {run.path}: {error.strerror}.") from error
        if vocab is not None:
            vocab.save(run.vocab_path)
        run.write_config(config)
        return run

    @classmethod
    def check_new(cls, path):
        """The `RunDirectory` of `path` if a new run can be written there.

        Raises:
            UserError: `path` (or a folder above it) is a file, or it holds a run.
        """
        run = cls(path)
        existing = next((p for p in (run.path, *run.path.parents) if p.exists()), None)
        if existing == run.path and not existing.is_dir():
            raise UserError(
                f"--out {run.path} is a file, not a directory; pass a directory for the run "
                "(it is created if missing)."
            )
        if existing is not None and not existing.is_dir():
            raise UserError(f"--out {run.path} cannot be created: {existing} is a file, not a directory.")
        if run.config_path.exists():
            raise UserError(
                f"{run.path} already holds a run; pass --resume {run.path} to continue it or a new --out."
            )
        return run

    @classmethod
    def open(cls, path):
        """Opens an existing run (for --resume and export)."""
        run = cls(path)
        if not run.config_path.is_file():
            raise UserError(f"{run.path} is not a run directory (no config.json); pass the --out of a run.")
        return run

    def write_config(self, config):
        atomic_write_json(self.config_path, config)

    def config(self):
        try:
            return read_json(self.config_path)
        except ValueError as error:
            raise UserError(str(error)) from error

    # -- checkpoints -------------------------------------------------------

    def _checkpoint_files(self):
        if not self.checkpoints.is_dir():
            return []
        found = []
        for name in os.listdir(self.checkpoints):
            match = CHECKPOINT_RE.match(name)
            if match:
                found.append((int(match.group(1)), self.checkpoints / name))
        return sorted(found)

    def save_checkpoint(self, model, epoch):
        """Saves the whole training state (weights, optimizer) after `epoch`."""
        atomic_save_keras(model, self.checkpoints / f"epoch-{epoch:04d}.keras")
        for _, old in self._checkpoint_files()[:-KEEP_CHECKPOINTS]:
            old.unlink(missing_ok=True)

    def latest_checkpoint(self):
        """`(epochs done, path)` of the newest checkpoint, or None."""
        files = self._checkpoint_files()
        return files[-1] if files else None

    def load_checkpoint(self, path):
        try:
            return keras.models.load_model(path, safe_mode=True)
        except Exception as error:  # a corrupt file is the user's to fix
            raise UserError(
                f"checkpoint {path} cannot be loaded ({error}); delete it to resume from the one before."
            ) from error

    # -- metrics -----------------------------------------------------------

    def metrics(self):
        if not self.metrics_path.exists():
            return {"epochs": []}
        return read_json(self.metrics_path)

    def write_metrics(self, metrics):
        atomic_write_json(self.metrics_path, metrics)

    def save_model(self, model):
        atomic_save_keras(model, self.model_path)
