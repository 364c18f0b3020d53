"""`--strategy`: which `tf.distribute` strategy a run trains under.

`default` is one device; `mirrored` replicates over this machine's devices
(all-reduce of gradients); `multiworker` synchronizes several processes,
each reading its role from `TF_CONFIG`, e.g. for worker 0 of two on one
machine::

    TF_CONFIG='{"cluster": {"worker": ["127.0.0.1:20000", "127.0.0.1:20001"]},
                "task": {"type": "worker", "index": 0}}'
"""

from __future__ import annotations

import json
import os

import tensorflow as tf

from rnnserve.errors import UserError
from rnnserve.training.config import STRATEGIES


def get_strategy(name):
    """The `tf.distribute.Strategy` for a `--strategy` name."""
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multiworker":
        try:
            cluster = json.loads(os.environ.get("TF_CONFIG", ""))["cluster"]
        except (ValueError, KeyError, TypeError) as error:
            raise UserError(
                "--strategy multiworker reads the cluster from TF_CONFIG, which is missing or not "
                'valid JSON with a "cluster" entry; see `rnnserve train --help`.'
            ) from error
        if not cluster:
            raise UserError("TF_CONFIG names an empty cluster.")
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise UserError(f"unknown --strategy {name!r}; expected one of {', '.join(STRATEGIES)}.")


def prepare_fit(model, strategy, dataset):
    """Works around two bugs of Keras 3.15's `fit` under MultiWorkerMirroredStrategy.

    Both are keras-team/keras#20585 ("Does Keras 3 work with
    MultiWorkerMirroredStrategy?"); other strategies are left alone.

    1. `fit` first reduces one batch across workers to build the optimizer and
       metrics symbolically, and that reduce rejects the nested
       (inputs, targets) structure. The build only needs shapes, so it is done
       here from the dataset's `element_spec` and the reduce is skipped.
    2. Every step's logs (scalar loss and metrics) are averaged across workers
       with `axis=0`, which a scalar does not have. They are averaged with
       `axis=None` instead.
    """
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return
    with strategy.scope():
        model._symbolic_build(data_batch=dataset.element_spec)
    model._maybe_symbolic_build = lambda iterator=None, data_batch=None: None
    _average_logs_across_workers()


def _average_logs_across_workers():
    from keras.src.backend.tensorflow import trainer as keras_trainer

    original = keras_trainer.reduce_per_replica
    if getattr(original, "rnnserve_patched", False):
        return

    def reduce_per_replica(values, strategy, reduction):
        if reduction in ("auto", "mean") and isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
            return tf.nest.map_structure(lambda value: strategy.reduce("MEAN", value, axis=None), values)
        return original(values, strategy, reduction)

    reduce_per_replica.rnnserve_patched = True
    keras_trainer.reduce_per_replica = reduce_per_replica
