"""The generic SavedModel writer: named endpoints in, a published version out.

Every export goes through `write_savedmodel`, language model or not. It
builds the SavedModel with `keras.export.ExportArchive` (which, unlike a
plain `tf.Module` holding Keras 3 layers, gives a SavedModel TensorFlow's
TF1 loader, and so TF Serving, can restore), adds `assets.extra/` (the
`rnnserve.json` metadata and the warmup requests), loads the result the way
TF Serving does and replays the warmup requests, and only then publishes it
atomically as `EXPORT_BASE/<version>` (see `versions.py`).

An `Endpoint` is one signature: a function returning a dict of named
outputs, and its named inputs as `tf.TensorSpec`s. The input names become the
signature's input keys, the dict keys its output keys:

    def serve(sequence):                                  # (B, T, F)
        return {"prediction": model(sequence)}            # (B, T, O)

    endpoint = Endpoint("serving_default", serve,
                        {"sequence": tf.TensorSpec((None, None, 3), tf.float32)})
    write_savedmodel("exports/regress", [endpoint], {"task": "regress"}, track=[model])
"""

from __future__ import annotations

import inspect
import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import keras
import numpy as np
import tensorflow as tf

from rnnserve.contract import METADATA_FILE, WARMUP_FILE
from rnnserve.training.export import versions
from rnnserve.training.export.verify import verify_savedmodel
from rnnserve.training.export.warmup import predict_log, write_warmup_file

METADATA_FORMAT = 1
STAGES = ("trace signatures", "write SavedModel", "load and replay warmup", "publish version")
# Sizes given to unknown dimensions of the default warmup example.
_EXAMPLE_BATCH, _EXAMPLE_STEPS = 1, 3


@dataclass(frozen=True)
class Endpoint:
    """One signature of an export.

    Args:
        name: The signature key (`"serving_default"`, `"step"`, ...).
        fn: Called with one keyword argument per input (symbolic `tf.Tensor`s);
            returns `{output name: tensor}`. Standard TensorFlow ops only.
        inputs: `{input name: tf.TensorSpec}`, in argument order; `None`
            dimensions accept any size.
        warmup: Example inputs (`{input name: array}`) written as warmup
            requests. Default: one example with ones for integer inputs,
            zeros for floats and `"a"` for strings, unknown dimensions set to
            1 (the batch) and 3.

    Example:

    ```python
    Endpoint("serving_default", lambda tokens: {"logits": model(tokens)},
             {"tokens": tf.TensorSpec((None, None), tf.int32)})
    ```
    """

    name: str
    fn: Callable[..., Mapping[str, tf.Tensor]]
    inputs: Mapping[str, tf.TensorSpec]
    warmup: Sequence[Mapping[str, np.ndarray]] = field(default=())

    def warmup_examples(self):
        """The explicit warmup inputs, or the default example."""
        return list(self.warmup) or [default_example(self.inputs)]


def default_example(specs):
    """`{name: array}` matching `specs`: ones (ints), zeros (floats), "a" (strings)."""
    example = {}
    for name, spec in specs.items():
        shape = [
            (_EXAMPLE_BATCH if axis == 0 else _EXAMPLE_STEPS) if size is None else size
            for axis, size in enumerate(spec.shape)
        ]
        if spec.dtype == tf.string:
            example[name] = np.full(shape, b"a", dtype=object)
        elif spec.dtype.is_integer:
            example[name] = np.ones(shape, dtype=spec.dtype.as_numpy_dtype)
        else:
            example[name] = np.zeros(shape, dtype=spec.dtype.as_numpy_dtype)
    return example


def _named_function(endpoint):
    """`endpoint.fn` as a positional function whose parameters are the input names.

    `tf.function` takes the signature's input keys from the parameter names.
    """
    names = list(endpoint.inputs)

    def signature_fn(*args):
        outputs = endpoint.fn(**dict(zip(names, args)))
        if not isinstance(outputs, Mapping) or not outputs:
            raise TypeError(f"Endpoint {endpoint.name!r} must return a non-empty dict of named outputs.")
        return dict(outputs)

    signature_fn.__signature__ = inspect.Signature(
        [inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD) for name in names]
    )
    signature_fn.__name__ = endpoint.name
    return signature_fn


def _describe(tensor):
    return {"dtype": tensor.dtype.name, "shape": [-1 if size is None else size for size in tensor.shape]}


def signature_metadata(endpoint, concrete_function):
    """`{"inputs": {name: {dtype, shape}}, "outputs": {...}}` of one traced endpoint."""
    return {
        "inputs": {name: _describe(spec) for name, spec in endpoint.inputs.items()},
        "outputs": {name: _describe(t) for name, t in sorted(concrete_function.structured_outputs.items())},
    }


def _check_endpoints(endpoints):
    names = [endpoint.name for endpoint in endpoints]
    if len(set(names)) != len(names):
        raise ValueError(f"Endpoint names must be distinct, got {names}.")
    if "serving_default" not in names:
        raise ValueError(f"An export needs a 'serving_default' endpoint, got {names}.")


def _report(progress, index):
    if progress is not None:
        progress(index, len(STAGES), STAGES[index] if index < len(STAGES) else "done")


def write_savedmodel(export_base, endpoints, metadata, track=(), version=None, progress=None, verify=True):
    """Writes, verifies and publishes one SavedModel version.

    Args:
        export_base: The base directory (created if missing).
        endpoints: The `Endpoint`s; one must be `serving_default`.
        metadata: JSON-able facts for `assets.extra/rnnserve.json`; `format`
            and `signatures` (every signature's inputs and outputs) are
            added.
        track: Keras layers/models whose variables the endpoints use, and
            TensorFlow resources such as lookup tables.
        version: The integer version, or `None` for 1 + the highest present.
        progress: Optional `progress(stage_index, stage_count, label)`,
            called as each stage of `STAGES` starts, and with
            `stage_index == stage_count` and label `"done"` at the end.
        verify: Load the staged export with the TF1 loader TF Serving uses
            and replay every warmup request before publishing. Default:
            `True`; turning it off saves a few seconds and nothing else.

    Returns:
        The path of the published version directory.

    Raises:
        UserError: `version` already exists.
        RuntimeError: the export does not load in the TF1 loader or a warmup
            request fails; nothing is published.

    Example:

    ```python
    write_savedmodel("exports/regress", [endpoint], {"task": "regress"}, track=[model])
    # 'exports/regress/1'
    ```
    """
    _check_endpoints(endpoints)
    versions.check_version_free(export_base, version)
    _report(progress, 0)
    archive = keras.export.ExportArchive()
    for resource in track:
        archive.track(resource)
    signatures = {}
    for endpoint in endpoints:
        # Traced here once; handing the archive an already traced tf.function makes
        # it save that trace instead of tracing every signature a second time.
        function = tf.function(
            _named_function(endpoint), input_signature=list(endpoint.inputs.values()), autograph=False
        )
        signatures[endpoint.name] = signature_metadata(endpoint, function.get_concrete_function())
        archive.add_endpoint(endpoint.name, function)
    metadata = {"format": METADATA_FORMAT, **metadata, "signatures": signatures}
    logs = [
        predict_log(endpoint.name, example)
        for endpoint in endpoints
        for example in endpoint.warmup_examples()
    ]

    with versions.staging_directory(export_base) as staged:
        _report(progress, 1)
        archive.write_out(staged, verbose=False)
        write_metadata(staged, metadata)
        write_warmup_file(os.path.join(staged, WARMUP_FILE), logs)
        _report(progress, 2)
        if verify:
            verify_savedmodel(staged, logs)
        _report(progress, 3)
        published = versions.publish(staged, export_base, version)
    _report(progress, len(STAGES))
    return published


def write_metadata(directory, metadata):
    """Writes `assets.extra/rnnserve.json` into a (staged) version directory."""
    path = os.path.join(directory, METADATA_FILE)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(metadata, f, indent=2, sort_keys=True, ensure_ascii=False)
        f.write("\n")


def read_metadata(version_dir):
    """The `rnnserve.json` of a version directory, as a dict."""
    with open(os.path.join(version_dir, METADATA_FILE), encoding="utf-8") as f:
        return json.load(f)
