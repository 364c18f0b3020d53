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

from rnnserve.training.tasks.base import Task, TaskData
from rnnserve.training.vocab import Vocabulary

SOURCE, TARGET = "hello", "ohlol"
STEPS_PER_EPOCH = 20


class Hello(Task):
    name = "hello"
    help = 'a toy: one-hot "hello" in, "ohlol" out'
    defaults = {"cell": "rnn", "units": 8, "layers": 1, "epochs": 15, "batch_size": 1, "lr": 0.1}
    quality_key = "accuracy"
    model_builder = "regressor"

    def prepare(self, args):
        vocab = Vocabulary.build(SOURCE + TARGET, level="char")
        x = keras.ops.one_hot(vocab.encode(SOURCE), len(vocab)).numpy()[None]  # (1, 5, V)
        y = vocab.encode(TARGET)[None]  # (1, 5)
        pair = tf.data.Dataset.from_tensors((x[0], y[0]))

        def train(first_epoch, last_epoch):
            steps = (last_epoch - first_epoch) * STEPS_PER_EPOCH
            return pair.repeat(steps * args.batch_size).batch(args.batch_size)

        return TaskData(
            train=train,
            steps_per_epoch=STEPS_PER_EPOCH,
            validation=None,
            tokens_per_batch=len(TARGET) * args.batch_size,
            vocab=vocab,
            extras={"x": x, "y": y},
        )

    def model_kwargs(self, args, data):
        size = len(data.vocab)
        return {
            "input_dim": size,
            "output_dim": size,
            "cell": args.cell,
            "units": args.units,
            "num_layers": args.layers,
        }

    def evaluate(self, model, args, data):
        predicted = np.argmax(model.predict(data.extras["x"], verbose=0), axis=-1)[0]  # (5,)
        text = data.vocab.decode(predicted)
        accuracy = float(np.mean(predicted == data.extras["y"][0]))
        if args.verbose != 0:
            print(f"{SOURCE} -> {text}  (target {TARGET}, accuracy {accuracy:.0%})", flush=True)
        return {"prediction": text, "sequence_accuracy": accuracy}
