"""`condgen` (1→N): generate an arithmetic progression of digits from a
vector that only says where to start and how to step.

The condition is one-hot(start ∈ 0..9) ⊕ one-hot(step ∈ 1..4); the target is
(start + k·step) mod 10 for k = 0..7, written with the task's vocabulary
(digits and "^" as the start token). The vector sets the decoder's initial
state (`build_conditioned_generator`). Quality: token accuracy of greedy
generation against the best context-free guess (the most frequent digit at
each position).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from rnnserve.models import greedy_decode
from rnnserve.training.config import CondGenConfig
from rnnserve.training.export import register_task_exporter
from rnnserve.training.tasks.examples import examples_data
from rnnserve.training.tasks.greedy_export import greedy_decoding_export
from rnnserve.training.tasks.task import Task
from rnnserve.training.vocab import Vocabulary

DIGITS = "0123456789"
START = "^"
STEPS = (1, 2, 3, 4)
LENGTH = 8
NUM_EXAMPLES = 4000
VOCAB = Vocabulary(tokens=("[UNK]", *DIGITS, START), level="char")
CONDITION_DIM = len(DIGITS) + len(STEPS)


def make_examples(count, rng):
    """`({"condition", "tokens"}, targets (N, LENGTH))` with teacher forcing."""
    start = rng.integers(0, 10, count)
    step_index = rng.integers(0, len(STEPS), count)
    condition = np.zeros((count, CONDITION_DIM), np.float32)
    condition[np.arange(count), start] = 1.0
    condition[np.arange(count), len(DIGITS) + step_index] = 1.0
    digits = (start[:, None] + np.array(STEPS)[step_index][:, None] * np.arange(LENGTH)[None, :]) % 10
    targets = (digits + VOCAB.id_of("0")).astype(np.int32)  # digit d has id d + id("0")
    tokens = np.concatenate([np.full((count, 1), VOCAB.id_of(START), np.int32), targets[:, :-1]], axis=1)
    return {"condition": condition, "tokens": tokens}, targets


def export_condgen(model, config, run_dir):
    """`serving_default`: `condition` (B,14) → `tokens` (B,8), the generated digits."""
    options = config["task_options"]
    spec = tf.TensorSpec((None, CONDITION_DIM), tf.float32)
    return greedy_decoding_export(model, "condition", spec, options["start_id"], options["output_length"])


register_task_exporter("condgen", export_condgen)


class CondGen(Task):
    """1→N: a (start, step) vector generates a digit progression (see the module docstring)."""

    config_class = CondGenConfig
    model_builder = "conditioned_generator"

    def prepare(self, config):
        data = examples_data(
            *make_examples(NUM_EXAMPLES, np.random.default_rng(config.seed)), config, LENGTH, vocab=VOCAB
        )
        mode = np.array([np.bincount(column).argmax() for column in data.extras["train_y"].T])  # (LENGTH,)
        data.extras["baseline"] = float(np.mean(data.extras["val_y"] == mode))
        return data

    def model_kwargs(self, config, data):
        return {
            "condition_dim": CONDITION_DIM,
            "vocab_size": len(VOCAB),
            "cell": config.cell,
            "units": config.units,
            "num_layers": config.layers,
        }

    def task_options(self):
        return {"start_id": VOCAB.id_of(START), "output_length": LENGTH}

    def evaluate(self, model, config, data):
        tokens = np.asarray(
            greedy_decode(model, data.extras["val_x"]["condition"], VOCAB.id_of(START), LENGTH)
        )
        accuracy = float(np.mean(tokens == data.extras["val_y"]))
        baseline = data.extras["baseline"]
        if config.verbose != 0:
            print(
                f"Token accuracy {accuracy:.1%} (per-position mode baseline {baseline:.1%}); e.g. {VOCAB.decode(tokens[0])}",
                flush=True,
            )
        return {"token_accuracy": accuracy, "baseline_token_accuracy": baseline}
