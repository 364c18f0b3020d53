"""The built wheel installs one package, `rnnserve`, with every module and data file.

Oracle: a wheel built by pip from the checkout, unpacked into an empty
directory, and imported by an interpreter that sees only that directory
and the environment's third-party packages (`python -S`: no site
processing, so the checkout's editable install is not on the path), from a
folder that holds a `models` package of its own.
"""

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile

from tests.conftest import REPO_ROOT

USER_PROJECT = os.path.join(REPO_ROOT, "tests", "fixtures", "user_project")


# What a build must not see: setuptools would reuse a stale build/ of the checkout.
NOT_SOURCES = shutil.ignore_patterns(
    ".git", ".venv*", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache", "runs", "exports", "demo"
)


def build_wheel(directory):
    """A wheel built by pip from a copy of the checkout's sources; returns its path."""
    source = os.path.join(directory, "source")
    shutil.copytree(REPO_ROOT, source, ignore=NOT_SOURCES)
    pip = [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation"]
    subprocess.run([*pip, "-w", directory, source], check=True, capture_output=True, timeout=300)
    (wheel,) = [name for name in os.listdir(directory) if name.endswith(".whl")]
    return os.path.join(directory, wheel)


def run_from_wheel(target, code):
    """Runs `code` with only `target` (the unpacked wheel) and site-packages' third-party modules."""
    prelude = (
        f"import sys; sys.path[:0] = [{target!r}]; sys.path.append({sysconfig.get_paths()['purelib']!r})\n"
    )
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    return subprocess.run(
        [sys.executable, "-S", "-c", prelude + code],
        cwd=USER_PROJECT,
        env={**env, "TF_CPP_MIN_LOG_LEVEL": "3"},
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_the_wheel_holds_only_the_rnnserve_package_with_its_data(tmp_path):
    wheel = build_wheel(str(tmp_path / "dist"))
    names = zipfile.ZipFile(wheel).namelist()
    top_level = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")}
    assert top_level == {"rnnserve"}
    for folder in ("models", "training", "serving", "benchmarks", "rnnserve"):
        for root, dirs, files in os.walk(os.path.join(REPO_ROOT, folder)):
            dirs[:] = [d for d in dirs if d != "__pycache__"]
            for name in files:
                if name.endswith(".py"):
                    relative = os.path.relpath(os.path.join(root, name), REPO_ROOT)
                    installed = relative if folder == "rnnserve" else f"rnnserve/{relative}"
                    assert installed in names, f"{relative} is missing from the wheel"
    assert "rnnserve/serving/protos/descriptors.binpb" in names


def test_the_installed_wheel_imports_and_runs_its_command(tmp_path):
    wheel = build_wheel(str(tmp_path / "dist"))
    target = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(target)
    code = (
        "import rnnserve.models, rnnserve.training.export, rnnserve.serving.server, rnnserve.serving.protos\n"
        f"assert rnnserve.models.__file__.startswith({str(target)!r}), rnnserve.models.__file__\n"
        "from rnnserve.models import LSTMCell\n"
        "bare = sorted(m for m in sys.modules if m.split('.')[0] in ('models', 'training', 'serving', 'benchmarks'))\n"
        "from rnnserve.cli import main\n"
        "status = main(['--help'])\n"
        "print('RESULT', status, bare)\n"
    )
    result = run_from_wheel(str(target), code)
    assert "RESULT 0 []" in result.stdout, result.stderr[-3000:]
    assert "commands:" in result.stdout and "serve" in result.stdout
