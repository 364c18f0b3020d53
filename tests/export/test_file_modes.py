"""Run directories and exports get the umask's modes, so a server running as
another user (a container's uid 10001, TF Serving's own user) can read them.

Oracles: the kernel's modes (`os.stat`) against the umask, a process running
as uid 65534 (nobody) under `setpriv` that reads every file of the export
with the system Python, and that user's own view of a private version
directory when rnnserve's loader opens it.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tempfile

import pytest

from rnnserve import cli

NOBODY = 65534
SYSTEM_PYTHON = "/usr/bin/python3"  # readable by every user; the project's venv may not be
AS_NOBODY = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
READ_EVERY_FILE = """
import os, sys
count = 0
for directory, _, files in os.walk(sys.argv[1], onerror=lambda error: sys.exit(f"cannot list: {error}")):
    for name in files:
        with open(os.path.join(directory, name), "rb") as f:
            f.read()
        count += 1
print(count)
"""


def require_setpriv():
    missing = [tool for tool in ("setpriv", SYSTEM_PYTHON) if not shutil.which(tool)]
    if os.geteuid() != 0 or missing:
        pytest.fail(f"reading as uid {NOBODY} needs root, setpriv and {SYSTEM_PYTHON} (missing: {missing})")


@pytest.fixture(scope="module")
def world_readable_tmp():
    """A fresh directory with mode 0755 parents (pytest's own temp root is 0700)."""
    path = tempfile.mkdtemp(prefix="rnnserve-modes-")
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def trained(world_readable_tmp):
    """(run directory, export base) of `rnnserve train hello` written under umask 022."""
    run, export_base = (os.path.join(world_readable_tmp, name) for name in ("run", "exports"))
    previous = os.umask(0o022)
    try:
        status = cli.main(
            ["train", "hello", "--epochs", "1", "--units", "8", "--verbose", "0",
             "--out", run, "--export-base", export_base]
        )  # fmt: skip
    finally:
        os.umask(previous)
    assert status == 0
    return run, export_base


def modes(root):
    """{relative path: permission bits} of `root` and everything under it."""
    found = {".": stat.S_IMODE(os.stat(root).st_mode)}
    for directory, subdirectories, files in os.walk(root):
        for name in subdirectories + files:
            path = os.path.join(directory, name)
            found[os.path.relpath(path, root)] = stat.S_IMODE(os.lstat(path).st_mode)
    return found


def assert_umask_modes(root):
    for relative, mode in modes(root).items():
        expected = 0o755 if os.path.isdir(os.path.join(root, relative)) else 0o644
        assert mode == expected, f"{relative}: {oct(mode)}, expected {oct(expected)}"


@pytest.mark.slow
def test_run_directory_files_get_the_umask_modes(trained):
    run, _ = trained
    found = modes(run)
    for written in ("config.json", "vocab.json", "metrics.json", "model.keras"):
        assert written in found, sorted(found)
    assert any(name.startswith("checkpoints/epoch-") for name in found), sorted(found)
    assert_umask_modes(run)


@pytest.mark.slow
def test_export_version_gets_the_umask_modes_and_another_user_reads_every_file(trained):
    require_setpriv()
    _, export_base = trained
    assert sorted(os.listdir(export_base)) == ["1"]
    assert_umask_modes(export_base)
    result = subprocess.run(
        [*AS_NOBODY, SYSTEM_PYTHON, "-I", "-c", READ_EVERY_FILE, export_base],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert int(result.stdout) == sum(len(files) for _, _, files in os.walk(export_base))


@pytest.mark.slow
def test_a_version_the_server_cannot_read_fails_with_permission_denied_naming_it(trained):
    """The version directory made private (as mkdtemp did), loaded by a process
    running as uid 65534: PERMISSION_DENIED and the path, not "does not exist"."""
    require_setpriv()
    _, export_base = trained
    private = os.path.join(os.path.dirname(export_base), "private", "hello")
    shutil.copytree(export_base, private)
    version = os.path.join(private, "1")
    os.chmod(version, 0o700)
    # The check runs before TensorFlow is touched, so a forked child can drop to nobody.
    read, write = os.pipe()
    child = os.fork()
    if child == 0:
        os.close(read)
        message = "no error"
        try:
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            from rnnserve.serving.errors import load_error
            from rnnserve.serving.servable import Servable

            try:
                Servable("hello", 1, version)
            except Exception as error:  # what the manager reports, as it reports it
                message = str(load_error(error))
        finally:
            os.write(write, message.encode())
            os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as f:
        message = f.read().decode()
    os.waitpid(child, 0)
    assert message.startswith("PERMISSION_DENIED"), message
    assert f"cannot read {version}: Permission denied" in message, message
    assert "does not exist" not in message
