"""Bad requests fail inside the signature with INVALID_ARGUMENT naming the input.

TF Serving feeds whatever a request holds, without comparing shapes with
the signature; the wrong-width `state` case therefore runs through the TF1
loader with the `state` placeholder replaced by an unshaped one, which is
what the C++ server's feed amounts to.
"""

import os

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2

from rnnserve.training.export.verify import load_tf1
from tests.export.artifacts import language_model_artifact


@pytest.fixture
def lm(tmp_path_factory):
    return language_model_artifact(tmp_path_factory, "gru", 1)


def _expect_invalid(pattern, call):
    with pytest.raises(tf.errors.InvalidArgumentError, match=pattern):
        call()


@pytest.mark.parametrize(
    "override, pattern",
    [
        ({"n": 1025}, r"invalid `max_new_tokens`: expected an integer in \[1, 1024\].*1025"),
        ({"n": 0}, r"invalid `max_new_tokens`"),
        ({"temperature": -0.5}, r"invalid `temperature`: expected a finite float >= 0.*-0.5"),
        ({"temperature": float("nan")}, r"invalid `temperature`"),
        ({"top_k": -1}, r"invalid `top_k`"),
    ],
    ids=["above-cap", "zero-tokens", "negative-temperature", "nan-temperature", "negative-top-k"],
)
def test_generate_and_generate_text_reject_bad_sampling_arguments(lm, override, pattern):
    _expect_invalid(pattern, lambda: lm.generate(lm.oracle["prompts"], **override))
    _expect_invalid(pattern, lambda: lm.generate_text(["hello"], **override))


def test_top_k_above_the_vocabulary_size_is_rejected(lm):
    size = len(lm.vocab)
    _expect_invalid(
        rf"invalid `top_k`: expected an integer in \[0, {size}\]", lambda: lm.generate([[1]], top_k=size + 1)
    )


@pytest.mark.parametrize("signature", ["serving_default", "step", "generate", "decode"])
def test_token_ids_outside_the_vocabulary_are_rejected(lm, signature):
    size = len(lm.vocab)
    tokens = np.array([[1, size, 2]], np.int32)
    pattern = rf"invalid `tokens`: every id must be in \[0, {size}\)"
    calls = {
        "serving_default": lambda: lm.call("serving_default", tokens=tokens),
        "step": lambda: lm.call("step", tokens=tokens, state=lm.zeros(1)),
        "generate": lambda: lm.generate(tokens),
        "decode": lambda: lm.call("decode", tokens=np.array([[-1]], np.int32)),
    }
    _expect_invalid(pattern, calls[signature])


def test_empty_prompts_and_state_batch_mismatch_are_rejected(lm):
    _expect_invalid(
        r"invalid `tokens`: expected at least one token", lambda: lm.generate(np.zeros((1, 0), np.int32))
    )
    _expect_invalid(
        r"invalid `prompt`: every prompt needs at least one token", lambda: lm.generate_text(["ab", ""])
    )
    _expect_invalid(
        r"invalid `state`: expected one row per sequence",
        lambda: lm.call("step", tokens=np.ones((2, 3), np.int32), state=lm.zeros(3)),
    )


def _signature_input_name(version_dir, signature, key):
    saved_model = saved_model_pb2.SavedModel()
    with open(os.path.join(version_dir, "saved_model.pb"), "rb") as f:
        saved_model.ParseFromString(f.read())
    return saved_model.meta_graphs[0].signature_def[signature].inputs[key].name


@pytest.mark.parametrize("signature", ["step", "generate"])
def test_a_state_of_the_wrong_width_is_rejected_as_tf_serving_would_feed_it(lm, signature):
    width = lm.state_size
    inputs = {"tokens": np.ones((1, 3), np.int32)}
    if signature == "generate":
        inputs.update(
            max_new_tokens=np.int32(2), temperature=np.float32(0), top_k=np.int32(0), seed=np.int64(0)
        )
    with tf.compat.v1.Session(graph=tf.Graph()) as session:
        unshaped = tf.compat.v1.placeholder(tf.float32, shape=None)
        state_name = _signature_input_name(lm.version_dir, signature, "state")
        meta_graph = load_tf1(session, lm.version_dir, input_map={state_name: unshaped})
        definition = meta_graph.signature_def[signature]
        feeds = {definition.inputs[key].name: value for key, value in inputs.items()}
        feeds[unshaped] = np.zeros((1, width + 3), np.float32)
        fetches = {key: info.name for key, info in definition.outputs.items()}
        with pytest.raises(
            tf.errors.InvalidArgumentError,
            match=rf"invalid `state`: expected width {width} .*\[{width + 3}\]",
        ):
            session.run(fetches, feeds)
