"""Atomic file writes: a reader (or a run killed mid-write) sees the old file
or the new one, never half of one.

Each write goes to a temporary file in the same directory, is flushed and
fsynced, then `os.replace`d over the target, and the directory is fsynced so
the rename survives a crash.

Files and directories are created with modes 0666/0777, so the process's
umask decides who may read them, as for any file the user makes (under the
usual umask 022: 0644 and 0755, readable by a server running as another user).
`tempfile.mkstemp`/`mkdtemp` would make them private (0600/0700) instead.
"""

from __future__ import annotations

import json
import os
import secrets


def fsync_directory(path):
    """Makes a rename or creation inside `path` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _temp_name(directory, prefix, suffix):
    return os.path.join(directory, f"{prefix}{secrets.token_hex(6)}{suffix}")


def create_temp_file(directory, prefix="", suffix=".tmp"):
    """Creates a new, empty file with a unique name in `directory`.

    Like `tempfile.mkstemp`, but with mode 0666 less the umask (mkstemp: 0600).

    Returns:
        `(fd, path)`: a descriptor open for writing, and the file's path.

    Example:

    ```python
    fd, tmp = create_temp_file("runs/x", prefix=".metrics.json.")
    oct(os.stat(tmp).st_mode & 0o777)  # '0o644' under umask 022
    ```
    """
    while True:
        path = _temp_name(directory, prefix, suffix)
        try:
            return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), path
        except FileExistsError:
            continue


def create_temp_directory(directory, prefix=""):
    """Creates a new, empty directory with a unique name in `directory` and returns its path.

    Like `tempfile.mkdtemp`, but with mode 0777 less the umask (mkdtemp: 0700).

    Example:

    ```python
    create_temp_directory("exports/charlm", prefix=".tmp-export-")  # mode 0755 under umask 022
    ```
    """
    while True:
        path = _temp_name(directory, prefix, "")
        try:
            os.mkdir(path, 0o777)
            return path
        except FileExistsError:
            continue


def atomic_write_bytes(path, data):
    """Writes `data` to `path` atomically.

    Example:

    >>> atomic_write_bytes("runs/x/metrics.json", b"{}")
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = create_temp_file(directory, prefix=f".{os.path.basename(path)}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    fsync_directory(directory)


def atomic_write_text(path, text):
    """Writes UTF-8 `text` to `path` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path, value):
    """Writes `value` as indented JSON to `path` atomically."""
    atomic_write_text(path, json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False) + "\n")


def read_json(path):
    """Reads a JSON file; a missing or corrupt file is a clear ValueError."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError as error:
        raise ValueError(f"{path} does not exist.") from error
    except (OSError, ValueError) as error:
        raise ValueError(f"{path} is not valid JSON ({error}).") from error
