"""Runs the client-only tests: a server from the full install, the tests in a client-only venv.

Run from the full install (it makes the test export with TensorFlow):

    .venv/bin/python tests/client/serve_and_run.py --client-python .venv-client/bin/python

1. checks that the client-only environment has no TensorFlow, TF Serving
   API or Keras (its `pip list`, and importing the client there);
2. exports the serving tests' small character language model (no training;
   tests/serving/serving_savedmodels.py) and serves it with `rnnserve serve`
   on free loopback ports;
3. runs tests/client with the client-only Python, the server's address in
   RNNSERVE_TEST_GRPC / RNNSERVE_TEST_REST / RNNSERVE_TEST_MODEL;
4. stops the server. The exit status is pytest's (or 1 if step 1 fails).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
SERVING_TESTS = os.path.join(os.path.dirname(HERE), "serving")
# Distributions the client-only install must not contain.
HEAVY_DISTRIBUTIONS = (
    "tensorflow",
    "tensorflow-cpu",
    "tensorflow-serving-api",
    "keras",
    "tf-keras",
    "tensorboard",
)
IMPORT_CHECK = (
    "import sys\n"
    "import rnnserve.serving.client, rnnserve.serving.rest_client, rnnserve.serving.session\n"
    "import rnnserve.serving.cli_client, rnnserve.cli\n"
    "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'tensorflow_serving', 'keras'))\n"
    "assert not heavy, heavy\n"
    "for name in ('tensorflow', 'keras'):\n"
    "    try:\n"
    "        __import__(name)\n"
    "    except ImportError:\n"
    "        continue\n"
    "    raise SystemExit(f'{name} is importable in the client-only install')\n"
)


def check_client_install(python: str) -> None:
    """Raises SystemExit when `python`'s environment holds TensorFlow, TF Serving's API or Keras."""
    listed = subprocess.run(
        [python, "-m", "pip", "list", "--format=json"],
        capture_output=True,
        text=True,
        check=True,
        cwd=tempfile.gettempdir(),
    )
    names = {entry["name"].lower().replace("_", "-") for entry in json.loads(listed.stdout)}
    present = sorted(names.intersection(HEAVY_DISTRIBUTIONS))
    if present:
        raise SystemExit(f"the client-only install contains {', '.join(present)}")
    if "rnnserve" not in names:
        raise SystemExit(f"{python} has no rnnserve installed")
    subprocess.run([python, "-c", IMPORT_CHECK], check=True, cwd=tempfile.gettempdir())
    print(f"client-only install: {len(names)} distributions, none of {', '.join(HEAVY_DISTRIBUTIONS)}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--client-python", required=True, help="Python of the client-only environment.")
    parser.add_argument("pytest_args", nargs="*", help="Extra pytest arguments (e.g. -x, -k NAME).")
    args = parser.parse_args(argv)
    # Absolute, not resolved: the checks and pytest run in other folders, and a
    # venv's python is a symlink that must stay one (it finds the venv by its path).
    args.client_python = os.path.abspath(args.client_python)
    check_client_install(args.client_python)

    from rnnserve.quiet_tensorflow import import_tensorflow_quietly

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import_tensorflow_quietly()  # the export needs TensorFlow; its start-up lines are noise here
    sys.path.insert(0, SERVING_TESTS)
    from conftest import LM, ServerProcess  # the serving tests' server launcher
    from serving_savedmodels import write_char_lm

    with tempfile.TemporaryDirectory(prefix="rnnserve-client-tests-") as root:
        base = os.path.join(root, LM)
        write_char_lm(base, 1)
        server = ServerProcess("--model_name", LM, "--model_base_path", base)
        try:
            env = dict(
                os.environ,
                RNNSERVE_TEST_GRPC=f"127.0.0.1:{server.grpc_port}",
                RNNSERVE_TEST_REST=f"127.0.0.1:{server.rest_port}",
                RNNSERVE_TEST_MODEL=LM,
            )
            env.pop("PYTHONPATH", None)
            command = [args.client_python, "-m", "pytest", "-c", "pytest.ini", "-q", *args.pytest_args, "."]
            return subprocess.run(command, cwd=HERE, env=env).returncode
        finally:
            server.stop()


if __name__ == "__main__":
    sys.exit(main())
