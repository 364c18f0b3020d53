"""`classify` (N→1): which of the tokens a, b, c occurs most often in a
sequence of 5–15 of them? A counting problem over variable-length, padded
sequences (ties are never generated).

Quality: validation accuracy against the trivial baseline, always answering
the most frequent class of the training set (about 1/3).
"""

from __future__ import annotations

import os

import numpy as np
import tensorflow as tf

from rnnserve import contract
from rnnserve.training.config import ClassifyConfig
from rnnserve.training.export import Endpoint, TaskExport, model_endpoint, register_task_exporter
from rnnserve.training.export.text import VocabularyTables
from rnnserve.training.export.vocab_files import read_vocabulary
from rnnserve.training.tasks.examples import examples_data, padded
from rnnserve.training.tasks.task import Task
from rnnserve.training.vocab import Vocabulary

SYMBOLS = "abc"
MIN_LENGTH, MAX_LENGTH = 5, 15
NUM_EXAMPLES = 6000


def make_examples(count, rng):
    """`(tokens (N, MAX_LENGTH) int32, labels (N,) int32)`; id 0 pads."""
    rows, labels = [], []
    while len(rows) < count:
        row = rng.integers(1, len(SYMBOLS) + 1, size=rng.integers(MIN_LENGTH, MAX_LENGTH + 1))
        counts = np.bincount(row, minlength=len(SYMBOLS) + 1)[1:]
        if (counts == counts.max()).sum() > 1:
            continue  # a tie has no answer
        rows.append(row)
        labels.append(int(counts.argmax()))
    return padded(rows, MAX_LENGTH), np.array(labels, np.int32)


def export_classify(model, config, run_dir):
    """Two signatures:

    - `serving_default`: `tokens` (B,T) ids → `logits` (B,C), the model's own;
    - `classify_text`: `text` (B,) strings of a, b, c → `label` (B,) the most
      frequent symbol, and `probabilities` (B,C), through the run's vocabulary.
    """
    tables = VocabularyTables(read_vocabulary(os.path.join(run_dir, "vocab.json")))
    labels = tf.constant(list(SYMBOLS))  # class i is SYMBOLS[i]

    def classify_text(text):
        tokens, _ = tables.encode_rows(text, contract.TEXT)  # (B, T), right-padded with 0
        logits = model(tokens, training=False)  # (B, C)
        return {
            contract.LABEL: tf.gather(labels, tf.argmax(logits, axis=-1)),
            contract.PROBABILITIES: tf.nn.softmax(logits),
        }

    text = Endpoint(
        contract.CLASSIFY_TEXT,
        classify_text,
        {contract.TEXT: tf.TensorSpec((None,), tf.string)},
        [{contract.TEXT: np.array([b"abcab", b"ccbac"], dtype=object)}],
    )
    return TaskExport([model_endpoint(model), text], metadata={"labels": list(SYMBOLS)}, track=[tables.table])


register_task_exporter("classify", export_classify)


class Classify(Task):
    """N→1: the most frequent of a, b, c in a padded sequence (see the module docstring)."""

    config_class = ClassifyConfig
    model_builder = "classifier"

    def prepare(self, config):
        vocab = Vocabulary(tokens=("[UNK]", *SYMBOLS), level="char")
        data = examples_data(
            *make_examples(NUM_EXAMPLES, np.random.default_rng(config.seed)), config, 1, vocab=vocab
        )
        majority = np.bincount(data.extras["train_y"]).argmax()
        data.extras["baseline"] = float(np.mean(data.extras["val_y"] == majority))
        return data

    def model_kwargs(self, config, data):
        return {
            "num_classes": len(SYMBOLS),
            "vocab_size": len(data.vocab),
            "cell": config.cell,
            "units": config.units,
            "num_layers": config.layers,
        }

    def evaluate(self, model, config, data):
        predicted = np.argmax(model.predict(data.extras["val_x"], verbose=0), axis=-1)
        accuracy = float(np.mean(predicted == data.extras["val_y"]))
        baseline = data.extras["baseline"]
        if config.verbose != 0:
            print(f"Validation accuracy {accuracy:.1%} (majority-class baseline {baseline:.1%})", flush=True)
        return {"accuracy": accuracy, "baseline_accuracy": baseline}
