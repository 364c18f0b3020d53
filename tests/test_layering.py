"""The pipeline runs one way: models/ imports nothing of the project,
training/ never imports serving/, and serving/ (like TF Serving) knows only
SavedModels: it imports neither models/ nor training/, and the client
commands run without loading them. Everything installs under one import
name, `rnnserve`, and no library package imports the command line.

Oracle: every module's import statements, read with Python's own parser,
and `sys.modules` of real interpreters.
"""

import ast
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT

# Folder in the repository -> its import name.
PACKAGES = {
    "models": "rnnserve.models",
    "training": "rnnserve.training",
    "serving": "rnnserve.serving",
    "benchmarks": "rnnserve.benchmarks",
    "rnnserve": "rnnserve",
}
BARE_NAMES = ("models", "training", "serving", "benchmarks")
COMMAND_LINE = {"rnnserve.cli", "rnnserve.demo", "rnnserve.__main__"}
FORBIDDEN = {
    "models": {"rnnserve.training", "rnnserve.serving", "rnnserve.benchmarks", "rnnserve.errors"},
    "training": {"rnnserve.serving", "rnnserve.benchmarks"},
    "serving": {"rnnserve.models", "rnnserve.training", "rnnserve.benchmarks"},
    "benchmarks": set(),
}


def python_files(folder):
    for root, _, files in os.walk(os.path.join(REPO_ROOT, folder)):
        yield from (os.path.join(root, name) for name in sorted(files) if name.endswith(".py"))


def module_name(path):
    folder, *rest = os.path.relpath(path, REPO_ROOT)[: -len(".py")].split(os.sep)
    parts = [PACKAGES[folder], *rest]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(path):
    """Absolute module names `path` imports (relative imports resolved)."""
    tree = ast.parse(open(path, encoding="utf-8").read())
    package = module_name(path) if path.endswith("__init__.py") else module_name(path).rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            yield base
            yield from (f"{base}.{alias.name}" for alias in node.names)


def within(name, prefixes):
    return any(name == prefix or name.startswith(prefix + ".") for prefix in prefixes)


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_imports_only_what_comes_before_it_in_the_pipeline(package):
    checked = 0
    for path in python_files(package):
        for imported in imported_modules(path):
            where = os.path.relpath(path, REPO_ROOT)
            assert not within(imported, FORBIDDEN[package]), f"{where} imports {imported}"
            assert not within(imported, COMMAND_LINE), f"{where} imports the command line ({imported})"
            assert imported.split(".")[0] not in BARE_NAMES, f"{where} imports bare {imported}"
        checked += 1
    assert checked > 3


def test_every_module_imports_under_the_rnnserve_name_only():
    modules = sorted(
        module_name(path)
        for folder in PACKAGES
        for path in python_files(folder)
        if not path.endswith("__main__.py")
    )
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        f"print(len({modules!r}), sorted(m for m in sys.modules if m.split('.')[0] in {BARE_NAMES!r}))\n"
    )
    # From a folder that has a `models` package of its own, as most ML projects do.
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    result = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        cwd=os.path.join(REPO_ROOT, "tests", "fixtures", "user_project"),
    )
    assert result.stdout.strip().splitlines()[-1] == f"{len(modules)} []", result.stderr[-3000:]


def test_a_client_command_loads_neither_models_nor_training():
    code = (
        "import sys\n"
        "from rnnserve.cli import main\n"
        "status = main(['status', '--server', '127.0.0.1:9', '--model', 'charlm'])\n"
        "print(status, sorted(m for m in ('rnnserve.models', 'rnnserve.training') if m in sys.modules))\n"
    )
    env = {**os.environ, "PYTHONPATH": REPO_ROOT}
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300
    )
    assert result.stdout.strip().splitlines()[-1] == "2 []", result.stderr[-2000:]
