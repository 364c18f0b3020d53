"""A user's Keras model file → a Keras 3 model, or one sentence saying why not.

Reads what people have: a Keras 3 `.keras` file, a Keras 2 `.keras` or `.h5`
file (`keras2.py`), and models with layers of their own. Loading is always
in Keras safe mode (no Python code from the file runs). A layer class Keras
cannot find is named before Keras tries to load anything; the module that
defines it is imported with `custom_objects_from(["my_layers"])` (or
`--custom-objects my_layers` on the command line): its Keras classes, and
whatever it registers with `keras.saving.register_keras_serializable`, are
then known.

Example:

```python
model = load_keras_file("classifier.h5", custom_objects_from(["my_layers"]))
```
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import zipfile

from rnnserve.errors import UserError
from rnnserve.training.export import keras2

_EXTENSIONS = {"zip": ".keras", "hdf5": (".h5", ".hdf5")}
# Config keys whose values are layers (wrappers, RNN cells, stacked cells).
_LAYER_KEYS = ("layer", "backward_layer", "forward_layer", "cell")
_LAYER_LIST_KEYS = ("layers", "cells")


def _import_module(name):
    if name.endswith(".py"):
        if not os.path.isfile(name):
            raise UserError(f"--custom-objects {name}: no such Python file.")
        spec = importlib.util.spec_from_file_location(os.path.splitext(os.path.basename(name))[0], name)
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
        return module
    if os.getcwd() not in sys.path:  # like `python -m`: modules next to the user resolve
        sys.path.insert(0, os.getcwd())
    return importlib.import_module(name)


def custom_objects_from(modules):
    """`{class name: class}` of every Keras layer (models included) the named modules define.

    Args:
        modules: Module names (`my_layers`, `pkg.layers`) or `.py` files.
            Importing a module also runs its
            `keras.saving.register_keras_serializable` decorators.

    Raises:
        UserError: a module cannot be imported (its own error, in one line).
    """
    import keras

    found = {}
    for name in modules or ():
        try:
            module = _import_module(name)
        except UserError:
            raise
        except Exception as error:  # noqa: BLE001 (the user's module may raise anything)
            raise UserError(
                f"--custom-objects {name}: importing it failed ({type(error).__name__}: {error})."
            ) from error
        for attribute, value in vars(module).items():
            if isinstance(value, type) and issubclass(value, keras.layers.Layer):
                found.setdefault(attribute, value)
    return found


def _file_kind(path):
    """`"zip"`, `"hdf5"`, or a UserError saying what the path is instead."""
    if not os.path.exists(path):
        raise UserError(f"{path} does not exist; pass a Keras model file (.keras or .h5).")
    if os.path.isdir(path):
        if os.path.exists(os.path.join(path, "saved_model.pb")):
            raise UserError(
                f"{path} is a TensorFlow SavedModel directory, not a Keras model file; export from the "
                "model's .keras or .h5 file (model.save('model.keras'))."
            )
        raise UserError(f"{path} is a directory, not a Keras model file (.keras or .h5).")
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            if "config.json" not in archive.namelist():
                raise UserError(f"{path} is a zip file without config.json, not a Keras model file.")
        return "zip"
    import h5py

    if h5py.is_hdf5(path):
        with h5py.File(path, "r") as f:
            if "model_config" not in f.attrs:
                raise UserError(
                    f"{path} is an HDF5 file without a model config (weights only, as save_weights "
                    "writes them); save the whole model with model.save('model.keras')."
                )
        return "hdf5"
    raise UserError(
        f"{path} is not a Keras model file: expected a .keras zip or an HDF5 .h5 file as model.save writes."
    )


def _layer_configs(config):
    """Every layer config (`{"class_name", "config"}`) inside a model config, the model's own first."""
    if not isinstance(config, dict) or not isinstance(config.get("class_name"), str):
        return
    yield config
    inner = config.get("config")
    if not isinstance(inner, dict):
        return
    for key in _LAYER_KEYS:
        yield from _layer_configs(inner.get(key))
    for key in _LAYER_LIST_KEYS:
        for item in inner.get(key) or ():
            yield from _layer_configs(item)


def _is_known(layer_config, custom_objects):
    import keras

    class_name = layer_config["class_name"]
    registered = layer_config.get("registered_name")
    module = str(layer_config.get("module") or "")
    if class_name in custom_objects or (registered and registered in custom_objects):
        return True
    for name in (registered, class_name):
        if name and keras.saving.get_registered_object(name) is not None:
            return True
    if module.startswith(("keras", "tf_keras")) and registered in (None, class_name, "Functional"):
        return True  # a Keras built-in; Keras itself names one it lacks
    spaces = (keras.layers, keras.models, keras)
    return not module and (class_name == "Functional" or any(hasattr(space, class_name) for space in spaces))


def _check_classes(path, config, custom_objects):
    for layer_config in _layer_configs(config):
        if _is_known(layer_config, custom_objects):
            continue
        name = layer_config["class_name"].split(">")[-1]
        module = str(layer_config.get("module") or "")
        module = module if module and module != "__main__" else "MODULE"
        raise UserError(
            f"the model uses layer class '{name}', which is not registered; "
            f"import the module that defines it with --custom-objects {module}"
        )


def _first_line(error):
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


def load_keras_file(path, custom_objects=None):
    """Loads a Keras model file (not compiled, safe mode).

    Args:
        path: A Keras 3 `.keras` file, or a Keras 2 `.keras` / `.h5` file.
        custom_objects: `{name: class}` for the model's own layers (see
            `custom_objects_from`).

    Returns:
        The `keras.Model`.

    Raises:
        UserError: one sentence: the path is missing, not a Keras model file,
            uses an unregistered layer class or a Python `Lambda`, or Keras
            cannot load it (its first line).
    """
    import keras

    import rnnserve.models  # noqa: F401  (registers the cells and Recurrent for deserialization)

    path = os.fspath(path)
    custom_objects = dict(custom_objects or {})
    kind = _file_kind(path)
    try:
        config = keras2.read_config(path)
    except (KeyError, ValueError, OSError) as error:
        raise UserError(f"{path} holds no readable model config ({_first_line(error)}).") from error
    _check_classes(path, config, custom_objects)
    try:
        if keras2.keras_major_version(path) == 2 or not path.endswith(_EXTENSIONS[kind]):
            return keras2.load_keras2(path, custom_objects)
        return keras.saving.load_model(path, custom_objects=custom_objects, compile=False, safe_mode=True)
    except UserError:
        raise
    except Exception as error:  # noqa: BLE001 (Keras raises ValueError, TypeError, KeyError, OSError…)
        message = _first_line(error)
        if "Lambda" in message and "safe_mode" in str(error):
            raise UserError(
                f"{path} has a Lambda layer holding Python code, which is not loaded (Keras safe mode); "
                "replace it with a layer class and pass its module with --custom-objects MODULE."
            ) from error
        raise UserError(f"Keras cannot load {path}: {message}") from error
