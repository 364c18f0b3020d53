"""`regress` (N→N real values): one-step-ahead forecasting of noisy seasonal
series by a recurrent layer with a linear read-out at every step
(`models.build_regressor`), trained with mean squared error.

Each series is y_t = sin(2πt/P₁ + φ₁) + ½·sin(2πt/P₂ + φ₂) + ε_t with random
periods and phases and ε ~ N(0, 0.1²); the model reads y_1..y_T and predicts
y_2..y_{T+1}. Quality: validation MSE against persistence (ŷ_{t+1} = y_t).
"""

from __future__ import annotations

import numpy as np

from rnnserve.training.config import RegressConfig
from rnnserve.training.tasks.examples import examples_data
from rnnserve.training.tasks.task import Task, optimizer

LENGTH = 60
NUM_SERIES = 3000
NOISE = 0.1


def make_series(count, rng):
    """`(inputs (N, T, 1), targets (N, T, 1))` float32."""
    t = np.arange(LENGTH + 1)[None, :]
    p1, p2 = rng.uniform(8, 20, (count, 1)), rng.uniform(3, 7, (count, 1))
    f1, f2 = rng.uniform(0, 2 * np.pi, (count, 1)), rng.uniform(0, 2 * np.pi, (count, 1))
    y = (
        np.sin(2 * np.pi * t / p1 + f1)
        + 0.5 * np.sin(2 * np.pi * t / p2 + f2)
        + rng.normal(0, NOISE, (count, LENGTH + 1))
    )
    y = y.astype(np.float32)[..., None]
    return y[:, :-1], y[:, 1:]


class Regress(Task):
    """N→N reals: one-step-ahead forecasts of seasonal series (see the module docstring)."""

    config_class = RegressConfig
    quality_key = "val_loss"
    model_builder = "regressor"

    def prepare(self, config):
        return examples_data(*make_series(NUM_SERIES, np.random.default_rng(config.seed)), config, LENGTH)

    def model_kwargs(self, config, data):
        return {
            "input_dim": 1,
            "output_dim": 1,
            "cell": config.cell,
            "units": config.units,
            "num_layers": config.layers,
        }

    def compile(self, model, config):
        model.compile(optimizer=optimizer(config), loss="mse")

    def evaluate(self, model, config, data):
        x, y = data.extras["val_x"], data.extras["val_y"]
        mse = float(np.mean((model.predict(x, verbose=0) - y) ** 2))
        persistence = float(np.mean((x - y) ** 2))
        if config.verbose != 0:
            print(
                f"Validation MSE {mse:.4f} (persistence {persistence:.4f}, noise floor {NOISE**2:.4f})",
                flush=True,
            )
        return {"mse": mse, "persistence_mse": persistence}
