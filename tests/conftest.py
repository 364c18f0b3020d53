"""Shared test set-up: quiet TensorFlow, deterministic seeds, clean Keras state."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# The real corpus some training tests use (never needed by the product): a
# file named by $RNNSERVE_TINYSHAKESPEARE. A user's clone does not have it, so
# those tests (marked `tinyshakespeare`) run only when the variable is set;
# CI sets it and fails when the file is missing, so they never skip there.
TINYSHAKESPEARE = os.environ.get("RNNSERVE_TINYSHAKESPEARE") or None


def pytest_collection_modifyitems(config, items):
    marked = [item for item in items if item.get_closest_marker("tinyshakespeare")]
    if not marked:
        return
    if TINYSHAKESPEARE is None:
        reason = "needs the tinyshakespeare corpus: set RNNSERVE_TINYSHAKESPEARE to its path"
        for item in marked:
            item.add_marker(pytest.mark.skip(reason=reason))
    elif not os.path.isfile(TINYSHAKESPEARE):
        raise pytest.UsageError(
            f"RNNSERVE_TINYSHAKESPEARE names {TINYSHAKESPEARE!r}, which is not a file; "
            "point it at tinyshakespeare.txt or unset it"
        )


@pytest.fixture(autouse=True)
def _fresh_keras_state():
    """Every test starts with float32 policy and fixed seeds."""
    keras.mixed_precision.set_global_policy("float32")
    keras.utils.set_random_seed(1234)
    yield
    keras.mixed_precision.set_global_policy("float32")


@pytest.fixture
def rng():
    return np.random.default_rng(0)
