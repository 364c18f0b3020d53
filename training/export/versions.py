"""Atomic version directories: `EXPORT_BASE/<version>/` appears whole or not at all.

A version is written into a temporary directory inside `EXPORT_BASE` whose
name is not a number (`.tmp-export-<random>`), so a server polling the base
(TF Serving, `serving/`) never loads it. When it is complete every file and
directory in it is fsynced, then it is renamed to its number and the base is
fsynced, so the rename survives a crash. The version number is chosen under
an exclusive `flock` on the base directory itself (no lock file is left
behind), so concurrent exports into one base get distinct versions.

An exporting process also holds a `flock` on its own temporary directory, so
a directory left behind by a killed export (SIGKILL, power loss: no chance
to clean up) is recognisable: nobody holds its lock. The next export into
the base deletes such directories once they are a minute old.

    with staging_directory(base) as tmp:
        ...write the SavedModel into tmp...
        version_dir = publish(tmp, base)        # base/3
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import time

from rnnserve.errors import UserError
from rnnserve.training.files import create_temp_directory, fsync_directory

TEMP_PREFIX = ".tmp-export-"
# A temporary directory this old whose lock nobody holds was abandoned (the
# age spares one that another export has just created and not yet locked).
ABANDONED_AFTER_SECONDS = 60
# TF Serving loads the sub-directories whose whole name is a base-10 integer.
_VERSION_RE = re.compile(r"[0-9]+")


def existing_versions(export_base):
    """The integer versions present in `export_base`, ascending (none if it does not exist).

    Example:

    ```python
    existing_versions("exports/charlm")   # 1/, 2/, 10/, .tmp-export-x/
    # [1, 2, 10]
    ```
    """
    try:
        names = os.listdir(export_base)
    except FileNotFoundError:
        return []
    except NotADirectoryError:
        raise UserError(f"{export_base} is a file, not a directory of SavedModel versions.") from None
    return sorted(
        int(name)
        for name in names
        if _VERSION_RE.fullmatch(name) and os.path.isdir(os.path.join(export_base, name))
    )


def check_base(export_base):
    """Raises UserError when `export_base` (or a parent of it) is a file, not a directory."""
    path = os.path.abspath(export_base)
    while not os.path.exists(path):
        path = os.path.dirname(path)
    if not os.path.isdir(path):
        raise UserError(
            f"{path} is a file, not a directory of SavedModel versions; pass another --export-base."
        )


def check_version_free(export_base, version):
    """Raises UserError early when `export_base` is a file, or an explicit `version` is invalid or taken."""
    check_base(export_base)
    if version is None:
        return
    if isinstance(version, bool) or not isinstance(version, int) or version < 0:
        raise UserError(f"--version must be a non-negative integer, got {version!r}.")
    if version in existing_versions(export_base):
        raise _version_taken(export_base, version)


def _version_taken(export_base, version):
    return UserError(f"version {version} already exists in {export_base}; pass another --version or omit it.")


@contextlib.contextmanager
def staging_directory(export_base):
    """A fresh non-numeric directory inside `export_base`, removed if the block fails.

    Yields:
        The path of the temporary directory, locked (`flock`) while the block
        runs. `publish` moves it away; if the block raises (or is
        interrupted), the directory and everything in it are deleted, so
        `export_base` is left as it was. Directories abandoned by killed
        exports are deleted first (`remove_abandoned`).
    """
    check_base(export_base)
    os.makedirs(export_base, exist_ok=True)
    remove_abandoned(export_base)
    path = create_temp_directory(export_base, prefix=TEMP_PREFIX)
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield path
    except BaseException:
        shutil.rmtree(path, ignore_errors=True)
        raise
    finally:
        os.close(fd)  # releases the lock


def remove_abandoned(export_base, older_than=ABANDONED_AFTER_SECONDS):
    """Deletes the temporary directories of `export_base` that no process
    holds a lock on and that were last modified more than `older_than`
    seconds ago; returns their names."""
    removed = []
    for name in sorted(os.listdir(export_base)):
        path = os.path.join(export_base, name)
        if not name.startswith(TEMP_PREFIX) or not os.path.isdir(path):
            continue
        try:
            if time.time() - os.stat(path).st_mtime < older_than:
                continue
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:  # published or removed meanwhile
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:  # an export is writing it
            os.close(fd)
            continue
        try:
            shutil.rmtree(path, ignore_errors=True)
            removed.append(name)
        finally:
            os.close(fd)
    return removed


def fsync_tree(path):
    """fsyncs every file, then every directory (deepest first), under `path`."""
    for root, _, files in os.walk(path, topdown=False):
        for name in files:
            fd = os.open(os.path.join(root, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_directory(root)


@contextlib.contextmanager
def _locked(directory):
    fd = os.open(directory, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield fd
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def publish(staged, export_base, version=None):
    """Makes the finished directory `staged` version `version` of `export_base`.

    Args:
        staged: A complete directory inside `export_base` (from
            `staging_directory`).
        export_base: The base directory TF Serving polls.
        version: The integer version, or `None` for 1 + the highest one
            present when the rename happens.

    Returns:
        The path `export_base/<version>`.

    Raises:
        UserError: an explicit `version` already exists.

    Example:

    ```python
    publish("exports/lm/.tmp-export-k2j", "exports/lm")
    # 'exports/lm/3'
    ```
    """
    fsync_tree(staged)
    with _locked(export_base) as base_fd:
        versions = existing_versions(export_base)
        if version is None:
            version = versions[-1] + 1 if versions else 1
        elif version in versions:
            raise _version_taken(export_base, version)
        target = os.path.join(export_base, str(version))
        os.rename(staged, target)
        os.fsync(base_fd)
    return target
