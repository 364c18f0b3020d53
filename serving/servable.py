"""One loaded SavedModel version: its SignatureDefs, request checks, and running them.

A `Servable` loads `base/<version>` with TensorFlow's TF1-style loader into
its own graph and session — the same path TF Serving's C++ loader takes — so
the embedded server runs exactly the graph TF Serving would, and an export
that only works in eager Python fails here too. Signatures are looked up in
the MetaGraphDef's `signature_def` map and run by tensor name.

Predict requests are checked in TF Serving's order (`predict_util.cc`),
with TF Serving's messages:

1. the signature exists (FAILED_PRECONDITION) and has a predict, classify or
   regress method name (INTERNAL);
2. the number of inputs matches (INVALID_ARGUMENT, naming extra and missing);
3. each alias exists, then its TensorProto parses;
4. the output filter names known, distinct outputs;

and, before a TensorProto is decoded, its dtype against the signature's
(TF Serving leaves that to the session; checking first keeps a tensor of
the wrong dtype from being decoded at all, and the message names the
input). Shapes are the session's business, as in TF Serving: a request
whose shape the graph cannot take fails there with TensorFlow's error.

Classify and Regress (`serving.classify_regress`) run through `run` too.

Example:

```python
servable = Servable("charlm", 1, "/models/charlm/1")
arrays, aliases = servable.prepare_predict("serving_default", {"tokens": np.array([[1, 2]], np.int32)})
servable.run("serving_default", arrays, aliases)["logits"].shape     # (B, T, V)
# (1, 2, 34)
```
"""

from __future__ import annotations

import collections
import logging
import os
import threading

import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import config_pb2

from rnnserve.serving import tensors
from rnnserve.serving.errors import ServingError, tf_error

DEFAULT_SIGNATURE = "serving_default"
PREDICT_METHOD = "tensorflow/serving/predict"
CLASSIFY_METHOD = "tensorflow/serving/classify"
REGRESS_METHOD = "tensorflow/serving/regress"
# Session callables kept per servable (one per signature × inputs × outputs × timeout).
MAX_CALLABLES = 64


def _timeout_key(timeout_ms) -> int:
    """A run timeout rounded down to two significant digits (0 = none).

    Requests whose deadlines differ by a few milliseconds share one session
    callable; a run is never given more time than its request allows, and
    at most 10% less.

    >>> _timeout_key(29_987), _timeout_key(250), _timeout_key(7), _timeout_key(0)
    (29000, 250, 7, 0)
    """
    timeout_ms = int(timeout_ms)
    if timeout_ms <= 0:
        return 0
    step = 10 ** max(len(str(timeout_ms)) - 2, 0)
    return timeout_ms // step * step


def check_readable(path: str) -> None:
    """Raises PermissionError naming the first file or directory of the version
    `path` this process cannot read (TensorFlow would report a readable-looking
    version as "SavedModel file does not exist").

    Example:

    ```python
    check_readable("exports/charlm/1")
    # PermissionError: cannot read exports/charlm/1: Permission denied  (a 0700 directory of another user)
    ```
    """

    def denied(where):
        raise PermissionError(f"cannot read {where}: Permission denied")

    def on_error(error):  # a missing path is left to TensorFlow's own message
        if isinstance(error, PermissionError):
            denied(error.filename)

    for directory, _, files in os.walk(path, onerror=on_error):
        if not os.access(directory, os.R_OK | os.X_OK):
            denied(directory)
        for name in files:
            if not os.access(os.path.join(directory, name), os.R_OK):
                denied(os.path.join(directory, name))


def _load_tf1(session, path: str, tags: list):
    """`tf.compat.v1.saved_model.loader.load` of the MetaGraph `tags` name, without its deprecation warning.

    TF Serving's loader is the TF1 one on purpose (module docstring). Only
    that one warning is dropped, by a filter on TensorFlow's logger while
    the load runs (its level is shared with other threads; a filter object
    of this call's own is not).
    """

    def keep(record: logging.LogRecord) -> bool:
        return "(from tensorflow.python.saved_model.loader_impl) is deprecated" not in record.getMessage()

    logger = tf.get_logger()
    logger.addFilter(keep)
    try:
        return tf.compat.v1.saved_model.loader.load(session, tags, path)
    finally:
        logger.removeFilter(keep)


class Servable:
    """A SavedModel version loaded into its own TF session.

    Args:
        name: the model name (for messages and model specs).
        version: the version number (its directory name).
        path: the version directory.
        session_config: the session's `ConfigProto` (None = TensorFlow's defaults).
        tags: the MetaGraphDef tags to load (`--saved_model_tags`).

    Attributes:
        signatures: name -> SignatureDef, the MetaGraphDef's map as saved.
        batcher: a `Batcher` of this version's own, or None (the server's).
    """

    def __init__(
        self, name: str, version: int, path: str, session_config=None, tags=(tf.saved_model.SERVING,)
    ):
        self.name, self.version, self.path = name, version, path
        check_readable(path)
        config = session_config if session_config is not None else config_pb2.ConfigProto()
        self._graph = tf.Graph()
        self._session = tf.compat.v1.Session(graph=self._graph, config=config)
        self._callables = collections.OrderedDict()  # see `_callable`
        self._callables_lock = threading.Lock()
        try:
            with self._graph.as_default():
                meta_graph = _load_tf1(self._session, path, list(tags))
        except Exception:
            self._session.close()
            raise
        self.signatures = dict(meta_graph.signature_def)
        self.batcher = None  # this version's own Batcher (--enable_per_model_batching_parameters)
        self._in_flight = 0
        self._closed = False
        self._idle = threading.Condition()

    # -- lifetime: requests hold a lease so unloading never cuts one short --
    def acquire(self) -> bool:
        """Registers an in-flight request; False once the servable is closing."""
        with self._idle:
            if self._closed:
                return False
            self._in_flight += 1
            return True

    def release(self) -> None:
        """Ends an in-flight request registered by `acquire`."""
        with self._idle:
            self._in_flight -= 1
            self._idle.notify_all()

    def close(self, timeout: float = 60.0) -> None:
        """Waits for in-flight requests (up to `timeout` s), then frees the session."""
        with self._idle:
            self._closed = True
            self._idle.wait_for(lambda: self._in_flight == 0, timeout=timeout)
        if self.batcher is not None:
            self.batcher.close()
        self._session.close()

    # -- predict --------------------------------------------------------
    def signature(self, name: str):
        """The SignatureDef `name` ('' = serving_default), FAILED_PRECONDITION if absent."""
        name = name or DEFAULT_SIGNATURE
        if name not in self.signatures:
            raise ServingError.signature_not_found(name)
        return self.signatures[name]

    def prepare_predict(self, signature_name: str, inputs, output_filter=(), max_tensor_bytes=None):
        """Checks a predict request; returns (input arrays by alias, output aliases).

        Args:
            signature_name: '' for serving_default.
            inputs: alias -> TensorProto (gRPC) or numpy array (REST).
            output_filter: aliases to return; empty means all outputs.
            max_tensor_bytes: the largest decoded TensorProto accepted, in
                bytes (None = no limit); checked before decoding.
        """
        signature = self.signature(signature_name)
        if signature.method_name not in (PREDICT_METHOD, CLASSIFY_METHOD, REGRESS_METHOD):
            raise ServingError(
                "INTERNAL",
                "Expected prediction signature method_name to be one of "
                f"{{{PREDICT_METHOD}, {CLASSIFY_METHOD}, {REGRESS_METHOD}}}. Was: {signature.method_name}",
            )
        expected = signature.inputs
        if len(inputs) != len(expected):
            raise ServingError.input_size_mismatch(inputs.keys(), expected.keys())
        arrays = {}
        for alias in sorted(inputs):
            if alias not in expected:
                raise ServingError.unknown_input_alias(alias, expected.keys())
            value = inputs[alias]
            if isinstance(value, np.ndarray):
                arrays[alias] = value
                continue
            if value.dtype != expected[alias].dtype:  # before decoding: the wrong dtype may be huge
                raise ServingError(
                    "INVALID_ARGUMENT",
                    f'Expects input "{alias}" to be {tensors.dtype_name(expected[alias].dtype)} '
                    f"but {tensors.dtype_name(value.dtype)} is provided.",
                )
            try:
                arrays[alias] = tensors.to_ndarray(value, max_bytes=max_tensor_bytes)
            except tensors.TensorTooLarge as error:
                raise ServingError(
                    "INVALID_ARGUMENT", f'Input "{alias}" is too large: its {error} (--max_request_bytes).'
                ) from None
            except tensors.TensorError:
                raise ServingError.tensor_parsing(alias) from None
        seen = []
        for alias in output_filter:
            if alias not in signature.outputs:
                raise ServingError.unknown_output_alias(alias, signature.outputs.keys())
            if alias in seen:
                raise ServingError.duplicate_output_alias(alias)
            seen.append(alias)
        return arrays, seen or sorted(signature.outputs)

    def _callable(self, feeds: tuple, fetches: tuple, timeout_ms: int):
        """A session callable for these feed and fetch tensor names and run timeout, made once.

        Like TF Serving's `Session::MakeCallable`: the feeds and fetches are
        bound in C++ ahead of time, which halves a small request's run time
        against `Session.run`. The timeout is part of a callable, so it is
        rounded down to two significant digits (`_timeout_key`) to let
        requests with similar deadlines share one; the least recently used
        of more than `MAX_CALLABLES` are released.
        """
        key = (feeds, fetches, timeout_ms)
        with self._callables_lock:
            run = self._callables.pop(key, None)
            if run is None:
                options = config_pb2.CallableOptions(feed=list(feeds), fetch=list(fetches))
                options.run_options.timeout_in_ms = timeout_ms
                run = self._session._make_callable_from_options(options)
            self._callables[key] = run  # most recently used last
            while len(self._callables) > MAX_CALLABLES:
                self._callables.popitem(last=False)
        return run

    def run_tensors(self, feeds: dict, fetches, timeout_ms: int = 0) -> dict:
        """One session run by graph tensor names: feeds name -> array; returns fetched name -> array."""
        names, fetches = tuple(sorted(feeds)), tuple(fetches)
        run = self._callable(names, fetches, _timeout_key(timeout_ms))
        try:
            values = run(*(feeds[name] for name in names))
        except tf.errors.OpError as error:
            raise tf_error(error) from None
        return dict(zip(fetches, values))

    def run(self, signature_name: str, arrays: dict, output_aliases, timeout_ms: int = 0) -> dict:
        """Runs a checked request through a signature; arrays by input alias, returns alias -> array."""
        signature = self.signature(signature_name)
        fetches = [signature.outputs[alias].name for alias in output_aliases]
        feeds = {signature.inputs[alias].name: array for alias, array in arrays.items()}
        values = self.run_tensors(feeds, fetches, timeout_ms)
        return {alias: values[name] for alias, name in zip(output_aliases, fetches)}
