"""`hello`: a classic first RNN exercise — read "hello" one character at a
time (one-hot) and emit "ohlol", one character per step (N→N).

The mapping needs memory: the two l's of "hello" must become "l" and "o".
A small Elman RNN learns it in a few hundred steps; the task prints the
decoded output and its accuracy, which must reach 100%.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from rnnserve.training.config import HelloConfig
from rnnserve.training.tasks.task import Task, TaskData
from rnnserve.training.vocab import Vocabulary

SOURCE, TARGET = "hello", "ohlol"
STEPS_PER_EPOCH = 20


class Hello(Task):
    """One-hot "hello" in, "ohlol" out (see the module docstring)."""

    config_class = HelloConfig
    quality_key = "accuracy"
    model_builder = "regressor"

    def prepare(self, config):
        vocab = Vocabulary.build(SOURCE + TARGET, level="char")
        x = keras.ops.one_hot(vocab.encode(SOURCE), len(vocab)).numpy()[None]  # (1, 5, V)
        y = vocab.encode(TARGET)[None]  # (1, 5)
        pair = tf.data.Dataset.from_tensors((x[0], y[0]))

        def train(first_epoch, last_epoch):
            steps = (last_epoch - first_epoch) * STEPS_PER_EPOCH
            return pair.repeat(steps * config.batch_size).batch(config.batch_size)

        return TaskData(
            train=train,
            steps_per_epoch=STEPS_PER_EPOCH,
            validation=None,
            tokens_per_batch=len(TARGET) * config.batch_size,
            vocab=vocab,
            extras={"x": x, "y": y},
        )

    def model_kwargs(self, config, data):
        size = len(data.vocab)
        return {
            "input_dim": size,
            "output_dim": size,
            "cell": config.cell,
            "units": config.units,
            "num_layers": config.layers,
        }

    def evaluate(self, model, config, data):
        predicted = np.argmax(model.predict(data.extras["x"], verbose=0), axis=-1)[0]  # (5,)
        text = data.vocab.decode(predicted)
        accuracy = float(np.mean(predicted == data.extras["y"][0]))
        if config.verbose != 0:
            print(f"{SOURCE} -> {text}  (target {TARGET}, accuracy {accuracy:.0%})", flush=True)
        return {"prediction": text, "sequence_accuracy": accuracy}
