"""Test artifacts for the export tests: run directories, exports, and outside oracles.

Exports are the slow part, so each one is built once per test session and
shared by every test (and every xdist worker) that needs it: `build_once`
builds into a directory under the session's shared temp root while holding a
file lock, and the other workers wait for it and reuse it.

The oracles never use the exporter: logits come from calling the Keras model,
greedy tokens from a Python loop that re-runs the Keras model on the whole
growing sequence (no state packing involved), text from the Python
`Vocabulary`.
"""

from __future__ import annotations

import fcntl
import functools
import json
import os
import shutil
import subprocess
import sys

import keras
import numpy as np
import tensorflow as tf

from rnnserve.models import build_language_model
from rnnserve.training.export import export_run
from rnnserve.training.vocab import Vocabulary

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GREEDY_TOKENS = 10
CORPUS = "hello world, how are you? the quick brown fox jumps over the lazy dog.\n"
PROJECT_PACKAGES = ("models", "training", "rnnserve", "serving", "benchmarks", "tests")
# Python source that makes importing any project package fail, for clean processes.
BLOCK_PROJECT_IMPORTS = f"""
import importlib.abc, sys

class _BlockProject(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {PROJECT_PACKAGES!r}:
            raise ImportError(f"project package {{name}} must not be imported here")
        return None

sys.meta_path.insert(0, _BlockProject())
"""


def shared_root(tmp_path_factory):
    """A temp directory common to all xdist workers of this session."""
    base = tmp_path_factory.getbasetemp()
    root = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    path = root / "export-artifacts"
    path.mkdir(exist_ok=True)
    return path


def build_once(root, name, build):
    """`root/name`, built by `build(path)` unless another worker already built it."""
    path = root / name
    with open(root / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (path / "BUILT").exists():
            shutil.rmtree(path, ignore_errors=True)
            path.mkdir()
            build(path)
            (path / "BUILT").touch()
    return path


def write_run(run_dir, model, vocabulary, task="charlm", builder="language_model", model_config=None):
    """A run directory as docs/run-directory.md describes, written by hand."""
    os.makedirs(run_dir, exist_ok=True)
    model.save(os.path.join(run_dir, "model.keras"))
    if vocabulary is not None:
        vocabulary.save(os.path.join(run_dir, "vocab.json"))
    config = {
        "format": 1,
        "task": task,
        "model": {"builder": builder, **(model_config or {})},
        "train": {"epochs": 0},
        "data": {"corpus": "test"},
    }
    with open(os.path.join(run_dir, "config.json"), "w", encoding="utf-8") as f:
        json.dump(config, f)


def keras_logits(model, tokens):
    """`(B, T, V)` logits of the Keras model itself."""
    return np.array(model(np.asarray(tokens, np.int32), training=False))


def python_greedy(model, prompts, count, masked_ids=(0,)):
    """Greedy continuation by re-running the Keras model on the whole sequence each step.

    Args:
        model: The Keras language model.
        prompts: `(B, T)` int ids.
        count: How many tokens to generate.
        masked_ids: Ids excluded from the argmax ([UNK], and padding when
            the vocabulary has it). Default: `(0,)`.

    Returns:
        `(B, count)` int32, never one of `masked_ids`.
    """
    sequences = np.asarray(prompts, np.int32)
    generated = []
    for _ in range(count):
        last = keras_logits(model, sequences)[:, -1].copy()  # (B, V)
        last[:, list(masked_ids)] = -np.inf
        token = np.argmax(last, axis=-1).astype(np.int32)  # (B,)
        generated.append(token)
        sequences = np.concatenate([sequences, token[:, None]], axis=1)
    return np.stack(generated, axis=1)


@functools.cache
def load_savedmodel(path):
    """`tf.saved_model.load(path)`, once per worker."""
    return tf.saved_model.load(str(path))


def only_version(base):
    """The single version directory of an export base."""
    (name,) = [entry for entry in os.listdir(base) if entry.isdigit()]
    return os.path.join(base, name)


def run_without_project(script, *args, cwd):
    """Runs a Python `script` in a process that cannot import this project.

    The repository is not on `sys.path` (no PYTHONPATH, cwd elsewhere) and
    `BLOCK_PROJECT_IMPORTS` runs first, so even an installed copy of the
    project cannot be imported. Returns stdout.
    """
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    result = subprocess.run(
        [sys.executable, "-c", BLOCK_PROJECT_IMPORTS + script, *map(str, args)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return result.stdout


def run_rnnserve(*args, cwd=None, timeout=600):
    """`python -m rnnserve ARGS` with the repository on PYTHONPATH; returns the CompletedProcess."""
    env = {**os.environ, "PYTHONPATH": REPO_ROOT, "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.run(
        [sys.executable, "-m", "rnnserve", *map(str, args)],
        cwd=cwd or REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def user_error_line(result):
    """The one `rnnserve …: error:` line of a failed command, which must end its stderr and
    come without a traceback (TensorFlow may log other lines before it)."""
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("rnnserve ")]
    assert len(lines) == 1 and result.stderr.rstrip().endswith(lines[0]), result.stderr
    return lines[0]


def _build_language_model_export(path, cell, layers):
    keras.utils.set_random_seed(sum(map(ord, cell)) + layers)
    vocabulary = Vocabulary.build(CORPUS, level="char" if layers == 1 else "word")
    model = build_language_model(len(vocabulary), cell=cell, units=8, num_layers=layers, embedding_dim=6)
    run_dir = os.path.join(path, "run")
    write_run(run_dir, model, vocabulary, model_config={"cell": cell, "num_layers": layers, "units": 8})
    # Loading in the TF1 loader is the clean-process test's job; here only the numbers.
    export_run(run_dir, os.path.join(path, "export"), verify=False)
    rng = np.random.default_rng(layers)
    tokens = rng.integers(1, len(vocabulary), (2, 9)).astype(np.int32)  # (B, T)
    prompts = tokens[:, :4]
    np.savez(
        os.path.join(path, "oracle.npz"),
        tokens=tokens,
        logits=keras_logits(model, tokens),
        prompts=prompts,
        greedy=python_greedy(model, prompts, GREEDY_TOKENS),
    )


class LanguageModelArtifact:
    """An exported language model with its oracle, vocabulary and loaded SavedModel."""

    def __init__(self, path):
        self.version_dir = os.path.join(path, "export", "1")
        self.oracle = dict(np.load(os.path.join(path, "oracle.npz")))
        self.vocab = Vocabulary.load(os.path.join(path, "run", "vocab.json"))
        self.model = load_savedmodel(self.version_dir)
        with open(os.path.join(self.version_dir, "assets.extra", "rnnserve.json"), encoding="utf-8") as f:
            self.metadata = json.load(f)
        self.state_size = self.model.signatures["step"].structured_input_signature[1]["state"].shape[1]

    def call(self, signature, **inputs):
        return {k: v.numpy() for k, v in self.model.signatures[signature](**inputs).items()}

    def zeros(self, batch):
        return np.zeros((batch, self.state_size), np.float32)

    def generate(self, tokens, state=None, n=GREEDY_TOKENS, temperature=0.0, top_k=0, seed=0):
        tokens = np.asarray(tokens, np.int32)
        return self.call(
            "generate",
            tokens=tokens,
            state=self.zeros(len(tokens)) if state is None else state,
            max_new_tokens=np.int32(n),
            temperature=np.float32(temperature),
            top_k=np.int32(top_k),
            seed=np.int64(seed),
        )

    def generate_text(self, prompts, n=GREEDY_TOKENS, temperature=0.0, top_k=0, seed=0):
        out = self.call(
            "generate_text",
            prompt=tf.constant(prompts),
            max_new_tokens=np.int32(n),
            temperature=np.float32(temperature),
            top_k=np.int32(top_k),
            seed=np.int64(seed),
        )
        return [text.decode("utf-8") for text in out["text"]]


def language_model_artifact(tmp_path_factory, cell, layers):
    """The shared export of a `build_language_model(cell, num_layers=layers)` run.

    Char vocabulary for one layer, word vocabulary for two; exported without
    the TF1 verification (the clean-process test covers loading).
    """
    path = build_once(
        shared_root(tmp_path_factory),
        f"lm-{cell}-{layers}",
        lambda p: _build_language_model_export(p, cell, layers),
    )
    return LanguageModelArtifact(path)
