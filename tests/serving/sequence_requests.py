"""Helpers of the server-side sequence tests: stock TF Serving requests with OVMS's stateful inputs.

`request` builds a `tensorflow_serving.apis` PredictRequest whose
`sequence_id` (DT_UINT64 [1]) and `sequence_control_input` (DT_UINT32 [1])
are made with `tf.make_tensor_proto`, as OpenVINO Model Server's docs show;
`Oracle` calls an export's `step` / `generate` directly through TensorFlow's
loader with client-held state (the numeric oracle).

Example:

>>> outputs = step(stub, tokens_of(3), control=START)      # a new sequence
>>> step(stub, tokens_of(1), sequence_id_of(outputs), END)  # its last call
"""

from __future__ import annotations

import grpc
import numpy as np
import pytest
import tensorflow as tf
from conftest import LM
from serving_savedmodels import STATE_SIZE, VOCAB_SIZE
from tensorflow_serving.apis import predict_pb2

START, END, FORK = 1, 2, 3
TIMEOUT = 30
RNG = np.random.default_rng(13)


def tokens_of(length: int) -> np.ndarray:
    """A (1, length) int32 row of real character ids (never [UNK] = 0)."""
    return RNG.integers(1, VOCAB_SIZE, size=(1, length)).astype(np.int32)


class Oracle:
    """One version's signatures called directly through TF2's loader, state held by the caller."""

    def __init__(self, path: str):
        self.loaded = tf.saved_model.load(path)

    def step(self, tokens, state=None):
        state = np.zeros((1, STATE_SIZE), np.float32) if state is None else state
        out = self.loaded.signatures["step"](tokens=tf.constant(tokens), state=tf.constant(state))
        return out["logits"].numpy(), out["state"].numpy()

    def generate(self, tokens, max_new_tokens, temperature=0.0, seed=0):
        out = self.loaded.signatures["generate"](
            tokens=tf.constant(tokens),
            state=tf.constant(np.zeros((1, STATE_SIZE), np.float32)),
            max_new_tokens=tf.constant(max_new_tokens, tf.int32),
            temperature=tf.constant(temperature, tf.float32),
            top_k=tf.constant(0, tf.int32),
            seed=tf.constant(seed, tf.int64),
        )
        return out["tokens"].numpy()


def request(signature, inputs, sequence_id=None, control=None, output_filter=(), version=None, model=LM):
    """A stock PredictRequest; the sequence inputs as OVMS documents them."""
    message = predict_pb2.PredictRequest()
    message.model_spec.name = model
    message.model_spec.signature_name = signature
    if version is not None:
        message.model_spec.version.value = version
    for name, value in inputs.items():
        message.inputs[name].CopyFrom(tf.make_tensor_proto(value))
    if sequence_id is not None:
        message.inputs["sequence_id"].CopyFrom(tf.make_tensor_proto([sequence_id], dtype=tf.uint64))
    if control is not None:
        message.inputs["sequence_control_input"].CopyFrom(tf.make_tensor_proto([control], dtype=tf.uint32))
    message.output_filter.extend(output_filter)
    return message


def outputs_of(response) -> dict:
    return {name: tf.make_ndarray(proto) for name, proto in response.outputs.items()}


def step(stub, tokens, sequence_id=None, control=None, output_filter=(), **kwargs) -> dict:
    response = stub.Predict(
        request("step", {"tokens": tokens}, sequence_id, control, output_filter, **kwargs), TIMEOUT
    )
    return outputs_of(response)


def generation_inputs(tokens, max_new_tokens, temperature=0.0, seed=0) -> dict:
    return {
        "tokens": tokens,
        "max_new_tokens": np.int32(max_new_tokens),
        "temperature": np.float32(temperature),
        "top_k": np.int32(0),
        "seed": np.int64(seed),
    }


def sequence_id_of(outputs: dict) -> int:
    assert outputs["sequence_id"].dtype == np.uint64 and outputs["sequence_id"].shape == (1,)
    return int(outputs["sequence_id"][0])


def rpc_code(call) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value.code()
