"""Keras 2 model files (tf.keras of TensorFlow ≤ 2.15, or `tf_keras`) read by Keras 3.

Keras 3 reads both file formats Keras 2 writes — HDF5 `.h5` (the config in
the file's `model_config` attribute, the weights in `model_weights/<layer>/`)
and the `.keras` zip (`config.json` and `model.weights.h5`, whose weights
sit where Keras 3 looks for them) — but stops at the first layer config key
that Keras 3 no longer knows. `translate_config` rewrites those keys:

| Keras 2 | Keras 3 |
|---|---|
| `batch_input_shape` of an `InputLayer` | `batch_shape` |
| `batch_input_shape` of a Sequential's first layer, without an `InputLayer` | an `InputLayer` of that `batch_shape` |
| `batch_input_shape` of any other layer | dropped |
| `time_major: false` of `SimpleRNN`/`LSTM`/`GRU`/`RNN` | dropped (`true` is refused) |
| `input_length` of `Embedding` | dropped |
| `ragged: false` of `InputLayer` | dropped (`true` is refused) |
| a `Policy` dtype object (`mixed_float16`) | its name |
| class `Functional` of module `keras.engine…` / `tf_keras…` | `keras.Model` |

`load_keras2` writes the translated config into a temporary copy of the file
and loads the copy with `keras.saving.load_model` in safe mode, so Keras
itself reads the weights.

Example:

```python
keras_major_version("lm.h5")   # saved by tf.keras 2.15
# 2
model = load_keras2("lm.h5", custom_objects={})
```
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import zipfile

from rnnserve.errors import UserError

_RNN_CLASSES = ("SimpleRNN", "LSTM", "GRU", "RNN", "ConvLSTM1D", "ConvLSTM2D", "ConvLSTM3D")
_CONFIG_FILE, _METADATA_FILE = "config.json", "metadata.json"
_ENGINE_MODULES = ("keras.engine", "keras.src.engine", "tf_keras")


def _version_major(version):
    try:
        return int(str(version).split(".")[0])
    except ValueError:
        return None


def keras_major_version(path):
    """The major Keras version that wrote `path` (2 or 3), or `None` if the file does not say."""
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            if _METADATA_FILE not in archive.namelist():
                return None
            return _version_major(json.loads(archive.read(_METADATA_FILE)).get("keras_version"))
    import h5py

    with h5py.File(path, "r") as f:
        version = f.attrs.get("keras_version")
    if isinstance(version, bytes):
        version = version.decode("utf-8")
    return None if version is None else _version_major(version)


def _refuse(path, layer, key):
    return UserError(
        f"{path}: layer `{layer}` was saved by Keras 2 with {key}, which Keras 3 cannot compute; "
        f"save it again without {key}."
    )


def _translate_layer(path, class_name, config):
    """Rewrites one layer's `config` dict in place."""
    name = config.get("name", class_name)
    shape = config.pop("batch_input_shape", None)
    if shape is not None and class_name == "InputLayer":
        config["batch_shape"] = shape
    if class_name in _RNN_CLASSES and config.pop("time_major", False):
        raise _refuse(path, name, "time_major=True")
    if class_name == "Embedding":
        config.pop("input_length", None)
    if class_name == "InputLayer" and config.pop("ragged", False):
        raise _refuse(path, name, "ragged=True")
    dtype = config.get("dtype")
    if isinstance(dtype, dict) and dtype.get("class_name") == "Policy":
        config["dtype"] = dtype["config"]["name"]


def translate_config(config, path="the model"):
    """A Keras 2 model config (parsed JSON) made loadable by Keras 3; returns a new object.

    Args:
        config: The parsed `config.json` of a `.keras` file, or the
            `model_config` attribute of an `.h5` file.
        path: Named in errors.

    Raises:
        UserError: a layer uses a Keras 2 option Keras 3 does not have.
    """
    if isinstance(config, list):
        return [translate_config(item, path) for item in config]
    if not isinstance(config, dict):
        return config
    class_name, inner = config.get("class_name"), config.get("config")
    if class_name == "Sequential" and isinstance(inner, dict) and inner.get("layers"):
        inner = {**inner, "layers": _with_input_layer(inner["layers"])}
        config = {**config, "config": inner}
    config = {key: translate_config(value, path) for key, value in config.items()}
    class_name, inner = config.get("class_name"), config.get("config")
    if isinstance(class_name, str) and isinstance(inner, dict):
        module = str(config.get("module") or "")
        if class_name in ("Functional", "Model") and module.startswith(_ENGINE_MODULES):
            config.update(module="keras", class_name="Model", registered_name=None)
        _translate_layer(path, class_name, inner)
    return config


def _with_input_layer(layers):
    """A Sequential's layer configs, starting with an `InputLayer` (Keras 2 often left it implicit)."""
    first = layers[0]
    shape = first.get("config", {}).get("batch_input_shape")
    if first.get("class_name") == "InputLayer" or shape is None:
        return layers
    return [{"class_name": "InputLayer", "config": {"batch_shape": shape}}, *layers]


def read_config(path):
    """The model config of a `.keras` zip or an `.h5` file, parsed."""
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            return json.loads(archive.read(_CONFIG_FILE))
    import h5py

    with h5py.File(path, "r") as f:
        config = f.attrs["model_config"]
    return json.loads(config.decode("utf-8") if isinstance(config, bytes) else config)


def _translated_copy(path, directory):
    """A copy of `path` inside `directory` whose config is `translate_config`'s."""
    config = json.dumps(translate_config(read_config(path), path))
    if zipfile.is_zipfile(path):
        copy = os.path.join(directory, "model.keras")
        with zipfile.ZipFile(path) as source, zipfile.ZipFile(copy, "w") as target:
            for item in source.infolist():
                data = config.encode("utf-8") if item.filename == _CONFIG_FILE else source.read(item)
                target.writestr(item, data)
        return copy
    import h5py

    copy = os.path.join(directory, "model.h5")
    shutil.copyfile(path, copy)
    with h5py.File(copy, "r+") as f:
        f.attrs["model_config"] = config.encode("utf-8")
    return copy


def load_keras2(path, custom_objects):
    """Loads a Keras 2 `.keras` or `.h5` file as a Keras 3 model (safe mode, not compiled).

    Args:
        path: The file.
        custom_objects: `{name: class}` for layers Keras cannot find by name.
    """
    import keras

    with tempfile.TemporaryDirectory(prefix="rnnserve-keras2-") as directory:
        copy = _translated_copy(path, directory)
        return keras.saving.load_model(copy, custom_objects=custom_objects, compile=False, safe_mode=True)
