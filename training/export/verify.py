"""Loads a SavedModel the way TF Serving does and replays its warmup requests.

TF Serving's C++ loader is TensorFlow's TF1 `LoadSavedModel`: it imports the
`serve` MetaGraph into a session, restores the variables, runs the init op
(lookup tables) and then feeds each request's tensors by the names the
SignatureDef lists. `tf.compat.v1.saved_model.loader.load` in a
`tf.compat.v1.Session` is the same path in Python, so an export that passes
here loads in TF Serving; one that only works with `tf.saved_model.load` may
not. The exporter runs this on every staged version before publishing it.

Example:

```python
verify_savedmodel("exports/lm/.tmp-export-x", [predict_log("serving_default", {"tokens": ids})])
```
"""

from __future__ import annotations

import tensorflow as tf


def run_signature(session, meta_graph, signature_name, inputs):
    """Runs one signature in a TF1 session, feeding tensors by signature name.

    Args:
        session: A `tf.compat.v1.Session` the SavedModel was loaded into.
        meta_graph: The `MetaGraphDef` the loader returned.
        signature_name: A key of `meta_graph.signature_def`.
        inputs: `{input key: array}`; must name every input.

    Returns:
        `{output key: numpy array}`.
    """
    signature = meta_graph.signature_def[signature_name]
    missing = sorted(set(signature.inputs) - set(inputs))
    if missing:
        raise ValueError(f"Signature {signature_name!r} needs input(s) {missing}.")
    feeds = {signature.inputs[key].name: value for key, value in inputs.items()}
    fetches = {key: info.name for key, info in signature.outputs.items()}
    return session.run(fetches, feeds)


def load_tf1(session, path, **kwargs):
    """`tf.compat.v1.saved_model.loader.load` of the `serve` tag, without its deprecation warning."""
    logger, level = tf.get_logger(), tf.get_logger().level
    logger.setLevel("ERROR")
    try:
        return tf.compat.v1.saved_model.loader.load(session, [tf.saved_model.SERVING], path, **kwargs)
    finally:
        logger.setLevel(level)


def verify_savedmodel(path, warmup_logs):
    """Loads `path` with the TF1 loader and replays every warmup request.

    Raises:
        RuntimeError: naming the signature whose request failed, with
            TensorFlow's message.
    """
    with tf.compat.v1.Session(graph=tf.Graph()) as session:
        meta_graph = load_tf1(session, path)
        for log in warmup_logs:
            request = log.predict_log.request
            name = request.model_spec.signature_name or "serving_default"
            inputs = {key: tf.make_ndarray(proto) for key, proto in request.inputs.items()}
            try:
                run_signature(session, meta_graph, name, inputs)
            except (tf.errors.OpError, ValueError, KeyError) as error:
                message = getattr(error, "message", str(error))
                raise RuntimeError(
                    f"The export's warmup request for signature {name!r} fails in the "
                    f"TF1 loader TF Serving uses: {message}"
                ) from error
