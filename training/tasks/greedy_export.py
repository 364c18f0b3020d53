"""The `serving_default` of the tasks that generate tokens from an encoded
input (seq2seq's source string, condgen's condition vector): greedy
decoding inside the graph, so a served model answers with tokens.
"""

from __future__ import annotations

import tensorflow as tf

from rnnserve.models import greedy_decode
from rnnserve.training.export import Endpoint, TaskExport


def greedy_decoding_export(model, input_name, input_spec, start_id, length, end_id=None):
    """The `serving_default` of an N→M or 1→N run: greedy tokens out.

    Args:
        model: From `build_seq2seq` or `build_conditioned_generator`.
        input_name: `"source"` or `"condition"`; input_spec its `tf.TensorSpec`.
        start_id: The decoder's start token. length: tokens generated.
        end_id: If given, positions after the first end token are set to 0.

    Returns:
        A `TaskExport` whose `serving_default` maps `input_name` → `tokens`
        (B, length) int32.
    """

    def serve(**inputs):
        tokens = tf.cast(greedy_decode(model, inputs[input_name], start_id, length), tf.int32)  # (B, N)
        if end_id is not None:
            ended = tf.cumsum(tf.cast(tokens == end_id, tf.int32), axis=1, exclusive=True) > 0
            tokens = tf.where(ended, tf.zeros_like(tokens), tokens)
        return {"tokens": tokens}

    metadata = {"start_id": start_id, "output_length": length, "end_id": end_id}
    return TaskExport([Endpoint("serving_default", serve, {input_name: input_spec})], metadata=metadata)
