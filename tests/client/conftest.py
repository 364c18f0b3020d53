"""The client-only tests' server: the one `make test-client` started, named by environment variables.

`serve_and_run.py` (run from the full install) exports a small character
language model, serves it with `rnnserve serve` on free loopback ports and
runs this suite in the client-only environment with:

- `RNNSERVE_TEST_GRPC`: host:port of the gRPC API,
- `RNNSERVE_TEST_REST`: host:port of the REST API,
- `RNNSERVE_TEST_MODEL`: the model's name.

Every test also checks that nothing it ran imported TensorFlow.
"""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest

from rnnserve import contract
from rnnserve.serving.client import PredictionClient
from rnnserve.serving.rest_client import RestClient

HEAVY = ("tensorflow", "tensorflow_serving", "keras")


def _required(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise pytest.UsageError(
            f"{name} is not set: these tests need a running server; run them with `make test-client`."
        )
    return value


@pytest.fixture(scope="session")
def grpc_target() -> str:
    return _required("RNNSERVE_TEST_GRPC")


@pytest.fixture(scope="session")
def rest_target() -> str:
    return _required("RNNSERVE_TEST_REST")


@pytest.fixture(scope="session")
def model() -> str:
    return _required("RNNSERVE_TEST_MODEL")


@pytest.fixture(scope="session")
def grpc_client(grpc_target):
    with PredictionClient(grpc_target, timeout=30) as opened:
        yield opened


@pytest.fixture(scope="session")
def rest_client(rest_target):
    with RestClient(rest_target, timeout=30) as opened:
        yield opened


@pytest.fixture(params=["grpc", "rest"])
def client(request, grpc_client, rest_client):
    """Each test taking `client` runs once over gRPC and once over REST."""
    return grpc_client if request.param == "grpc" else rest_client


@pytest.fixture(scope="session")
def state_size(grpc_client, model) -> int:
    """S, the width of the model's packed state (from its `generate` signature)."""
    return grpc_client.metadata(model).signatures[contract.GENERATE].inputs[contract.STATE].shape[-1]


def generate_inputs(
    tokens, state_size: int, max_new_tokens: int, temperature=0.0, seed=0, state=None
) -> dict:
    """The six inputs of the `generate` signature with the contract's dtypes; a zero state by default."""
    tokens = np.asarray(tokens, np.int32)  # (B, T)
    return {
        contract.TOKENS: tokens,
        contract.STATE: np.zeros((tokens.shape[0], state_size), np.float32) if state is None else state,
        contract.MAX_NEW_TOKENS: np.int32(max_new_tokens),
        contract.TEMPERATURE: np.float32(temperature),
        contract.TOP_K: np.int32(0),
        contract.SEED: np.int64(seed),
    }


@pytest.fixture(autouse=True)
def _no_tensorflow():
    """Fails any test after which TensorFlow, TF Serving's protos or Keras are imported."""
    yield
    loaded = sorted(name for name in sys.modules if name.split(".")[0] in HEAVY)
    assert not loaded, f"the client imported {loaded[:5]}"
