"""What the client-only install costs next to the full one: install size and time, import time and RSS.

Builds two fresh venvs from this checkout, `pip install .` (the client:
numpy, grpcio, grpcio-health-checking, protobuf) and `pip install '.[full]'`
(TensorFlow, Keras, TF Serving's API, ...), timing each install and
measuring its site-packages on disk. Then, in fresh processes (median of
`--runs`), the wall time and peak RSS of importing:

- the client (`PredictionClient`, `RestClient`, `Session`) in each install;
- in the full install, also TF Serving's generated API modules, which is
  what a client built on `tensorflow-serving-api` imports (and so TensorFlow),
  and the server (`rnnserve.serving.server`).

pip's cache is left as it is (a warm cache makes the install times mostly
unpacking); the machine's load is recorded with the results.

    .venv/bin/python benchmarks/client_install.py   # writes benchmarks/results/client-install.json

Run from the repository root with a Python that has rnnserve installed (for
`rnnserve.benchmarks.machine`); the measured venvs are made from scratch.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from rnnserve.benchmarks import machine

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
RESULTS = REPO_ROOT / "benchmarks" / "results" / "client-install.json"

# What each measured import runs; it prints its own import seconds and peak RSS (MB).
IMPORTS = {
    "client": (
        "from rnnserve.serving.client import PredictionClient\n"
        "from rnnserve.serving.rest_client import RestClient\n"
        "from rnnserve.serving.session import Session\n"
    ),
    "tf_serving_api_client": (
        "from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc\n"
        "from tensorflow_serving.apis import get_model_metadata_pb2, model_service_pb2_grpc\n"
    ),
    "server": "from rnnserve.serving.server import ModelServer\n",
}
_PROBE = (
    "import resource, sys, time\n"
    "start = time.perf_counter()\n"
    "exec(sys.argv[1])\n"
    "seconds = time.perf_counter() - start\n"
    "heavy = any(m.split('.')[0] == 'tensorflow' for m in sys.modules)\n"
    "print(seconds, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, heavy)\n"
)


def _du_mb(path: pathlib.Path) -> float:
    total = sum(
        entry.stat().st_size for entry in path.rglob("*") if entry.is_file() and not entry.is_symlink()
    )
    return round(total / 2**20, 1)


def _site_packages(venv: pathlib.Path) -> pathlib.Path:
    [found] = venv.glob("lib/python*/site-packages")
    return found


def install(venv: pathlib.Path, spec: str) -> dict:
    """A fresh venv with `pip install SPEC`; returns its install seconds, size and distribution count."""
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    start = time.perf_counter()
    subprocess.run(
        [python, "-m", "pip", "--disable-pip-version-check", "--quiet", "install", spec],
        check=True,
        cwd=REPO_ROOT,
    )
    seconds = time.perf_counter() - start
    listed = subprocess.run([python, "-m", "pip", "list", "--format=json"], capture_output=True, text=True)
    return {
        "install_s": round(seconds, 1),
        "site_packages_mb": _du_mb(_site_packages(venv)),
        "distributions": len(json.loads(listed.stdout)),
    }


def measure_import(python: str, code: str, runs: int) -> dict:
    """Median wall seconds and peak RSS (MB) of `code` in `runs` fresh processes, outside the checkout."""
    seconds, rss, heavy = [], [], False
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    env.pop("PYTHONPATH", None)
    for _ in range(runs):
        out = subprocess.run(
            [python, "-c", _PROBE, code],
            capture_output=True,
            text=True,
            check=True,
            cwd=tempfile.gettempdir(),
            env=env,
        ).stdout.split()
        seconds.append(float(out[0]))
        rss.append(float(out[1]))
        heavy = heavy or out[2] == "True"
    return {
        "import_s": round(statistics.median(seconds), 2),
        "rss_mb": round(statistics.median(rss)),
        "imports_tensorflow": heavy,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="Fresh processes per import (default 5).")
    parser.add_argument("--out", default=str(RESULTS), help="Results file (default: %(default)s).")
    args = parser.parse_args(argv)
    root = pathlib.Path(tempfile.mkdtemp(prefix="rnnserve-install-bench-"))
    results = {"machine": machine.describe(), "runs": args.runs, "installs": {}}
    try:
        plan = (
            ("client", ".", ("client",)),
            ("full", ".[full]", ("client", "tf_serving_api_client", "server")),
        )
        for step, (name, spec, imports) in enumerate(plan, 1):
            print(f"[{step}/{len(plan)}] pip install '{spec}' into a fresh venv ...", flush=True)
            venv = root / name
            entry = install(venv, spec)
            for label in imports:
                print(f"      import {label} x{args.runs} ...", flush=True)
                entry[label] = measure_import(str(venv / "bin" / "python"), IMPORTS[label], args.runs)
            results["installs"][name] = entry
            print(f"      {json.dumps(entry)}", flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    pathlib.Path(args.out).write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
