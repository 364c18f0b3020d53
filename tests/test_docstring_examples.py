"""Docstring examples either run or say they are illustrative.

Every `>>>` example in the modules of `RUN` runs here with `doctest` and
must print what its docstring shows; together they take a few seconds and
need no server, trained model, export or corpus file. Examples that do
need one are illustrative: an `Example:` followed by a ```python fenced
block, as in Keras' docstrings, which nothing runs. The second test keeps
the two apart: a module outside `RUN` may not contain a `>>>` line.

As in Keras' docstrings, examples use `np`, `keras` and `tf` without
importing them. They run in an empty temporary directory, so the files
some of them write (a metrics file, a chart, a warm-up file) land there.

Oracle: Python's `doctest` on the examples' own expected output, and the
docstrings of every module as Python's parser reads them.
"""

import ast
import doctest
import importlib
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.conftest import REPO_ROOT

# Folder in the repository -> its import name.
PACKAGES = {
    "models": "rnnserve.models",
    "training": "rnnserve.training",
    "serving": "rnnserve.serving",
    "benchmarks": "rnnserve.benchmarks",
    "rnnserve": "rnnserve",
}

RUN = (
    "rnnserve.benchmarks.machine",
    "rnnserve.benchmarks.timing",
    "rnnserve.contract",
    "rnnserve.errors",
    "rnnserve.models.builders",
    "rnnserve.models.cells",
    "rnnserve.models.cells.coupled_lstm",
    "rnnserve.models.cells.gru",
    "rnnserve.models.cells.lstm",
    "rnnserve.models.cells.peephole_lstm",
    "rnnserve.models.cells.simple_rnn",
    "rnnserve.models.convert",  # imports torch, as the parity tests do",
    "rnnserve.models.fused",
    "rnnserve.models.fused.activations",
    "rnnserve.models.fused.bptt",
    "rnnserve.models.fused.gru",
    "rnnserve.models.fused.lstm",
    "rnnserve.models.fused.simple_rnn",
    "rnnserve.models.recurrent",
    "rnnserve.models.runner",
    "rnnserve.models.state",
    "rnnserve.serving.cli_client",
    "rnnserve.serving.config",
    "rnnserve.serving.config_protos",
    "rnnserve.serving.decoding",
    "rnnserve.serving.errors",
    "rnnserve.serving.flags",
    "rnnserve.serving.http_bodies",
    "rnnserve.serving.json_examples",
    "rnnserve.serving.json_tensors",
    "rnnserve.serving.metrics",
    "rnnserve.serving.sequence_predict",
    "rnnserve.serving.sequences",
    "rnnserve.serving.servable",
    "rnnserve.serving.session",
    "rnnserve.serving.tensors",
    "rnnserve.serving.version_source",
    "rnnserve.training.corpus",
    "rnnserve.training.export.keras_import",
    "rnnserve.sampling",
    "rnnserve.training.export.warmup",
    "rnnserve.training.files",
    "rnnserve.training.metrics",
    "rnnserve.training.partitioning",
    "rnnserve.training.plots",
    "rnnserve.training.tasks.examples",
    "rnnserve.training.vocab",
)


def python_modules():
    """(import name, path) of every module of the installed packages."""
    for folder, package in PACKAGES.items():
        for root, _, files in os.walk(os.path.join(REPO_ROOT, folder)):
            for name in sorted(files):
                if not name.endswith(".py"):
                    continue
                path = os.path.join(root, name)
                parts = [
                    package,
                    *os.path.relpath(path, os.path.join(REPO_ROOT, folder))[: -len(".py")].split(os.sep),
                ]
                if parts[-1] == "__init__":
                    parts.pop()
                yield ".".join(parts), path


def docstrings(path):
    """The module's, its classes' and its functions' docstrings."""
    tree = ast.parse(open(path, encoding="utf-8").read())
    nodes = [
        tree,
        *(n for n in ast.walk(tree) if isinstance(n, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)),
    ]
    return [text for text in map(ast.get_docstring, nodes) if text]


def has_doctest(path):
    return any(line.lstrip().startswith(">>>") for text in docstrings(path) for line in text.splitlines())


@pytest.mark.parametrize("module_name", RUN)
def test_examples_print_what_the_docstring_shows(module_name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    module = importlib.import_module(module_name)
    tests = [test for test in doctest.DocTestFinder().find(module) if test.examples]
    assert tests, f"{module_name} has no examples to run; take it off RUN"
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    report = []
    for test in tests:
        test.globs.update(np=np, keras=keras, tf=tf)
        runner.run(test, out=report.append)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, "".join(report)


def test_every_module_with_examples_to_run_is_run():
    modules = dict(python_modules())
    assert set(RUN) <= set(modules), f"RUN names modules that do not exist: {sorted(set(RUN) - set(modules))}"
    unlisted = sorted(name for name, path in modules.items() if name not in RUN and has_doctest(path))
    assert not unlisted, (
        f"{unlisted} have `>>>` examples that no test runs: add the module to RUN if they run cheaply "
        "without a server or a trained model, otherwise make them an illustrative ```python block"
    )
