"""TF Serving's kind of test models, built here with plain TensorFlow.

- `write_half_plus_two(base, version)`: the TF1-graph model of TF Serving's
  quickstart and its `testdata/saved_model_half_plus_two.py`: variables
  a = 0.5, b = 2, c = 3; a string placeholder `tf_example` of serialized
  tf.Examples parsed to `x` (float, shape [?, 1]); `y = a x + b`,
  `y2 = a x + c`. Signatures: `serving_default` (predict, x -> y),
  `classify_x_to_y` (classify, inputs -> scores = y), `regress_x_to_y` and
  `regress_x_to_y2` (regress, inputs -> outputs).
- `write_tf2_signatures(base, version)`: a `tf.saved_model.save` module whose
  signatures all have method_name `tensorflow/serving/predict` (as every
  TF2 signature has) and each its own input placeholder:
  `serving_default` (x [?] -> y = 0.5 x + 2), `classify` (inputs: serialized
  examples with feature x -> classes [N, 2] "neg"/"pos", scores [N, 2] =
  [1 - sigmoid(x), sigmoid(x)]), `regress` (inputs -> outputs [N] = 0.5 x + 2).

Both rename a temporary directory into place, like every exporter.

Example:

>>> write_half_plus_two("/tmp/models/half_plus_two", 123)   # .../half_plus_two/123
"""

from __future__ import annotations

import os
import tempfile

import numpy as np
import tensorflow as tf

HALF_PLUS_TWO_VERSION = 123  # TF Serving's testdata directory is 00000123
CLASS_LABELS = (b"neg", b"pos")


def half_plus_two(x):
    """The oracle: y = 0.5 x + 2."""
    return 0.5 * np.asarray(x, np.float32) + 2.0


def sigmoid(x):
    """The TF2 classify signature's positive-class score."""
    return 1.0 / (1.0 + np.exp(-np.asarray(x, np.float32)))


def _into_place(write, base: str, version: int) -> str:
    os.makedirs(base, exist_ok=True)
    tmp = os.path.join(tempfile.mkdtemp(prefix=".tmp-", dir=base), "model")
    write(tmp)
    final = os.path.join(base, str(version))
    os.rename(tmp, final)
    os.rmdir(os.path.dirname(tmp))
    return final


def write_half_plus_two(base: str, version: int = HALF_PLUS_TWO_VERSION, tags=("serve",)) -> str:
    """The TF1-graph half_plus_two (see the module docstring); returns the version directory."""
    v1 = tf.compat.v1
    build_info = v1.saved_model.utils.build_tensor_info
    signature_def = v1.saved_model.signature_def_utils.build_signature_def

    def write(path: str) -> None:
        with tf.Graph().as_default(), v1.Session() as session:
            a = v1.Variable(0.5, name="a")
            b = v1.Variable(2.0, name="b")
            c = v1.Variable(3.0, name="c")
            serialized = v1.placeholder(tf.string, shape=[None], name="tf_example")  # (N,)
            features = tf.io.parse_example(serialized, {"x": tf.io.FixedLenFeature([1], tf.float32)})
            x = tf.identity(features["x"], name="x")  # (N, 1)
            y = tf.identity(a * x + b, name="y")  # (N, 1)
            y2 = tf.identity(a * x + c, name="y2")  # (N, 1)

            def regression(output):
                return signature_def(
                    {"inputs": build_info(serialized)},
                    {"outputs": build_info(output)},
                    "tensorflow/serving/regress",
                )

            signatures = {
                "serving_default": signature_def(
                    {"x": build_info(x)}, {"y": build_info(y)}, "tensorflow/serving/predict"
                ),
                "classify_x_to_y": signature_def(
                    {"inputs": build_info(serialized)},
                    {"scores": build_info(y)},
                    "tensorflow/serving/classify",
                ),
                "regress_x_to_y": regression(y),
                "regress_x_to_y2": regression(y2),
            }
            session.run(v1.global_variables_initializer())
            builder = v1.saved_model.Builder(path)
            builder.add_meta_graph_and_variables(session, list(tags), signature_def_map=signatures)
            builder.save()

    return _into_place(write, base, version)


class _Signatures(tf.Module):
    """Several predict-method signatures, each with its own input placeholder."""

    def __init__(self):
        super().__init__()
        self.a = tf.Variable(0.5)
        self.b = tf.Variable(2.0)

    def _x(self, serialized):
        parsed = tf.io.parse_example(serialized, {"x": tf.io.FixedLenFeature([], tf.float32)})
        return parsed["x"]  # (N,)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
    def half_plus_two(self, x):
        return {"y": self.a * x + self.b}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
    def classify(self, inputs):
        p = tf.sigmoid(self._x(inputs))  # (N,)
        scores = tf.stack([1.0 - p, p], axis=1)  # (N, 2)
        classes = tf.tile(tf.constant([list(CLASS_LABELS)]), [tf.shape(p)[0], 1])  # (N, 2)
        return {"classes": classes, "scores": scores}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
    def regress(self, inputs):
        return {"outputs": self.a * self._x(inputs) + self.b}


def write_tf2_signatures(base: str, version: int = 1) -> str:
    """The TF2 module with predict-method signatures (see the module docstring)."""
    module = _Signatures()

    def write(path: str) -> None:
        tf.saved_model.save(
            module,
            path,
            signatures={
                "serving_default": module.half_plus_two,
                "classify": module.classify,
                "regress": module.regress,
            },
        )

    return _into_place(write, base, version)


def example(x: float):
    """A tf.Example with the float feature x."""
    return tf.train.Example(
        features=tf.train.Features(feature={"x": tf.train.Feature(float_list=tf.train.FloatList(value=[x]))})
    )
