"""REST bodies <-> numpy, with TF Serving's rules and messages (`util/json_tensor.cc`).

Predict requests come in two formats:

- row: `{"instances": [ROW, ...]}`; a ROW is a value/list for a signature
  with one input, or an object with one key per input. Every ROW of an input
  must have the same shape; the batch dimension is the number of ROWs. The
  reply is `{"predictions": [...]}` (objects when there are several outputs).
- columnar: `{"inputs": VALUE}` for one input or `{"inputs": {NAME: VALUE}}`;
  each VALUE is a whole tensor. The reply is `{"outputs": ...}`.

Bytes travel as `{"b64": "<base64>"}`; a string output whose name ends in
`_bytes` is written that way (TF Serving's rule), and so is any string output
that is not valid UTF-8 (TF Serving would emit invalid JSON there).
Floats are written with the shortest text that round-trips the float32,
and NaN / Infinity as TF Serving writes them.

Every problem is a `ServingError("INVALID_ARGUMENT", ...)` (UNIMPLEMENTED
for a dtype JSON cannot express).

Example:

>>> doc = parse_json(b'{"instances": [[1, 2], [3, 4]]}')
>>> inputs, fmt = inputs_from_json(doc, {"tokens": np.dtype(np.int32)})
>>> inputs["tokens"].shape, fmt
((2, 2), 'row')
>>> outputs_to_json({"y": np.array([0.1, 2.0], np.float32)}, "row")
'{"predictions": [0.1, 2.0]}'
"""

from __future__ import annotations

import base64
import binascii
import json

import numpy as np

from rnnserve.serving.errors import ServingError
from rnnserve.serving.tensors import dtype_enum, dtype_name, shape_text

ROW, COLUMNAR = "row", "columnar"
_INT_RANGES = {
    np.dtype(dtype): (int(np.iinfo(dtype).min), int(np.iinfo(dtype).max))
    for dtype in (np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64)
}
_FLOAT_EXACT = {
    np.dtype(np.float16): 2**11 - 1,
    np.dtype(np.float32): 2**24 - 1,
    np.dtype(np.float64): 2**53 - 1,
}


def invalid(message: str) -> ServingError:
    """An INVALID_ARGUMENT error: what every malformed REST body is."""
    return ServingError("INVALID_ARGUMENT", message)


def json_text(value) -> str:
    """A JSON value as text, for error messages (TF Serving prints the value)."""
    return json.dumps(value, allow_nan=True)


def json_type(value) -> str:
    if value is None:
        return "Null"
    if isinstance(value, bool):
        return "True" if value else "False"
    return {dict: "Object", list: "Array", str: "String"}.get(type(value), "Number")


def _type_name(dtype: np.dtype) -> str:
    """TensorFlow's DataTypeString, as TF Serving's messages use it: float32 -> 'float', object -> 'string'."""
    return dtype_name(dtype_enum(dtype))


def parse_json(body: bytes) -> dict:
    """Parses a request body; it must be a JSON object. Errors read as TF Serving's (rapidjson's).

    >>> parse_json(b'{"instances": [1]} x')
    Traceback (most recent call last):
    ...
    rnnserve.serving.errors.ServingError: INVALID_ARGUMENT: JSON Parse error: The document root must not be followed by other values. at offset: 19
    """
    if not body:
        raise invalid("JSON Parse error: The document is empty")
    try:
        doc = json.loads(body)
    except json.JSONDecodeError as error:
        raise invalid(f"JSON Parse error: {_rapidjson_message(error, body)}") from None
    except (ValueError, RecursionError) as error:  # not UTF-8, or nested too deep
        raise invalid(f"JSON Parse error: {error}") from None
    if not isinstance(doc, dict):
        raise invalid(f"JSON Value: {json_text(doc)} Is not object")
    return doc


def _rapidjson_message(error: json.JSONDecodeError, body: bytes) -> str:
    """rapidjson's wording (`error/en.h`) for the errors whose cause Python's parser names alike."""
    offset = len(error.doc[: error.pos].encode("utf-8"))  # rapidjson counts bytes
    if not body.strip():
        text = "The document is empty."
    elif error.msg == "Extra data":
        text = "The document root must not be followed by other values."
    elif error.msg == "Expecting value":
        text = "Invalid value."
    elif error.msg.startswith("Expecting property name"):
        text = "Missing a name for object member."
    elif error.msg == "Expecting ':' delimiter":
        text = "Missing a colon after a name of object member."
    elif error.msg.startswith("Unterminated string"):
        text = "Missing a closing quotation mark in string."
    else:
        text = error.msg + "."
    return f"{text} at offset: {offset}"


def signature_name(doc: dict) -> str:
    """The optional `signature_name` of a request ('' when absent)."""
    name = doc.get("signature_name", "")
    if not isinstance(name, str):
        raise invalid(
            f"JSON Value: {json_text(doc)} not formatted correctly. "
            "'signature_name' key must be a string value."
        )
    return name


def is_b64(value) -> bool:
    return isinstance(value, dict) and len(value) == 1 and isinstance(value.get("b64"), str)


def decode_b64(value) -> bytes:
    text = value["b64"]
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise invalid("Unable to base64 decode") from None


def _scalar(value, dtype: np.dtype):
    """One JSON leaf converted to `dtype`, with TF Serving's type checks."""

    def type_error():
        return invalid(
            f"JSON Value: {json_text(value)} Type: {json_type(value)} is not of expected type: {_type_name(dtype)}"
        )

    if dtype == object:
        if isinstance(value, str):
            return value.encode("utf-8")
        if isinstance(value, dict):
            if not is_b64(value):
                raise invalid(f"JSON Value: {json_text(value)} not formatted correctly for base64 data")
            return decode_b64(value)
        raise type_error()
    if isinstance(value, (dict, str, type(None))):
        raise type_error()
    if dtype == np.bool_:
        if not isinstance(value, bool):
            raise type_error()
        return value
    if isinstance(value, bool):
        raise type_error()
    if dtype.kind == "f":
        if isinstance(value, int) and abs(value) > _FLOAT_EXACT[dtype]:
            raise invalid(
                f"Cannot convert JSON value: {json_text(value)} to {_type_name(dtype)} without loss of precision."
            )
        if isinstance(value, float) and np.isfinite(value) and abs(value) > np.finfo(dtype).max:
            raise invalid(
                f"Cannot convert JSON value: {json_text(value)} to {_type_name(dtype)} without loss of precision."
            )
        return value
    if dtype.kind in "iu":
        low, high = _INT_RANGES[dtype]
        if not isinstance(value, int) or not low <= value <= high:
            raise type_error()
        return value
    raise ServingError(
        "UNIMPLEMENTED", f"Conversion of JSON Value: {json_text(value)} to type: {_type_name(dtype)}"
    )


def _dense_shape(value) -> list[int]:
    """The shape implied by following the first element of each nested list."""
    shape = []
    while isinstance(value, list):
        shape.append(len(value))
        if not value:
            break
        value = value[0]
    return shape


def _fill(value, level: int, shape: list[int], dtype: np.dtype, out: list) -> None:
    rank = len(shape)
    if not isinstance(value, list):
        if level != rank:
            raise invalid(
                f"JSON Value: {json_text(value)} found at incorrect level: {level + 1} "
                f"in the JSON DOM. Expected at level: {rank}"
            )
        out.append(_scalar(value, dtype))
        return
    if level >= rank:
        raise invalid(f"Encountered list at unexpected level: {level} expected < {rank}")
    if len(value) != shape[level]:
        raise invalid(
            f"Encountered list at unexpected size: {len(value)} at level: {level} "
            f"expected size: {shape[level]}"
        )
    for item in value:
        _fill(item, level + 1, shape, dtype, out)


MAX_RANK = 64  # deeper nesting is refused before recursing into it


def json_to_array(value, dtype: np.dtype) -> np.ndarray:
    """A JSON value (scalar or nested lists) as an array of `dtype`."""
    shape = _dense_shape(value)
    if len(shape) > MAX_RANK:
        raise invalid(f"JSON value is nested {len(shape)} lists deep; at most {MAX_RANK} are accepted")
    flat: list = []
    _fill(value, 0, shape, dtype, flat)
    array = np.empty(len(flat), dtype=dtype)
    array[:] = flat
    return array.reshape(shape)


def _instances(rows: list, dtypes: dict) -> dict:
    names = sorted(dtypes)
    if (not isinstance(rows[0], dict) or is_b64(rows[0])) and len(names) > 1:
        raise invalid(
            "instances is a plain list, but expecting list of objects as multiple "
            "input tensors required as per tensorinfo_map"
        )
    objects = isinstance(rows[0], dict) and not is_b64(rows[0])
    columns: dict[str, list] = {name: [] for name in names}
    for index, row in enumerate(rows):
        is_object = isinstance(row, dict) and not is_b64(row)
        if objects and not is_object:
            raise invalid(f"Expecting object but got list at item {index} of input list")
        if not objects and is_object:
            raise invalid(f"Expecting value/list but got object at item {index} of input list")
        items = row.items() if objects else [(names[0], row)]
        for key, value in items:
            where = f"element: {index} key: {key}" if objects else f"element: {index}"
            try:
                if key not in dtypes:
                    raise invalid(f"JSON object: does not have named input: {key}")
                array = json_to_array(value, dtypes[key])
                if columns[key] and array.shape != columns[key][0].shape:
                    first = columns[key][0]
                    if array.size != first.size:
                        raise invalid(f"Expecting tensor size: {first.size} but got: {array.size}")
                    raise invalid(
                        f"Expecting shape {shape_text(first.shape)} but got: {shape_text(array.shape)}"
                    )
            except ServingError as error:
                raise ServingError(
                    error.code,
                    f"Failed to process {where} of 'instances' list. Error: {error.code}: {error.message}",
                ) from None
            columns[key].append(array)
        if objects and set(row) != set(names):
            raise invalid(
                f"Failed to process element: {index} of 'instances' list. JSON object: "
                f"{json_text(row)} keys must be equal to: {','.join(names)}"
            )
    return {name: np.stack(arrays) for name, arrays in columns.items()}


def _columnar(value, dtypes: dict) -> dict:
    if not isinstance(value, dict) or is_b64(value):
        if len(dtypes) > 1:
            raise invalid(
                "inputs is a plain value/list, but expecting an object as multiple "
                "input tensors required as per tensorinfo_map"
            )
        ((name, dtype),) = dtypes.items()
        return {name: json_to_array(value, dtype)}
    arrays = {}
    for name in sorted(dtypes):
        if name not in value:
            raise invalid(f"Missing named input: {name} in 'inputs' object.")
        arrays[name] = json_to_array(value[name], dtypes[name])
    return arrays


def inputs_from_json(doc: dict, dtypes: dict) -> tuple[dict, str]:
    """The input arrays of a predict body, and its format (ROW or COLUMNAR).

    Args:
        doc: the parsed body.
        dtypes: the signature's inputs, name -> numpy dtype (object = string).
    """
    if not dtypes:
        raise invalid(f"Failed to get input map for signature: {signature_name(doc) or 'DEFAULT'}")
    has_instances, has_inputs = "instances" in doc, "inputs" in doc
    if has_instances and has_inputs:
        raise invalid(
            f"JSON Value: {json_text(doc)} Not formatted correctly expecting only one of "
            "'inputs' or 'instances' keys to exist "
        )
    if has_instances:
        rows = doc["instances"]
        if not isinstance(rows, list):
            raise invalid(f"JSON Value: {json_text(doc)} Excepting 'instances' to be an list/array")
        if not rows:
            raise invalid(f"JSON Value: {json_text(doc)} No values in 'instances' array")
        return _instances(rows, dtypes), ROW
    if has_inputs:
        return _columnar(doc["inputs"], dtypes), COLUMNAR
    raise invalid("Missing 'inputs' or 'instances' key")


def _to_json_values(name: str, array: np.ndarray):
    """An output array as nested JSON-ready lists (see the module doc for the rules)."""
    if array.dtype == object:
        as_b64 = name.endswith("_bytes")

        def convert(item: bytes):
            if not as_b64:
                try:
                    return item.decode("utf-8")
                except UnicodeDecodeError:
                    pass
            return {"b64": base64.b64encode(item).decode("ascii")}

        flat = [convert(bytes(item)) for item in array.ravel()]
    elif array.dtype.kind == "f" and array.dtype != np.float64:
        flat = [float(str(item)) for item in array.ravel()]  # shortest float32 text
    elif array.dtype.kind == "c":
        raise invalid(f"Failed to write JSON value for tensor type: {array.dtype.name}")
    else:
        flat = array.ravel().tolist()
    if array.ndim == 0:
        return flat[0]
    return np.array(flat + [None], dtype=object)[:-1].reshape(array.shape).tolist()


def outputs_to_json(outputs: dict, fmt: str) -> str:
    """The reply body for predict outputs (name -> array) in the request's format."""
    if not outputs:
        raise invalid("Cannot convert empty tensor map to JSON")
    names = sorted(outputs)
    if fmt == COLUMNAR:
        values = {name: _to_json_values(name, outputs[name]) for name in names}
        body = {"outputs": values if len(names) > 1 else values[names[0]]}
        return json.dumps(body, allow_nan=True)
    batch = None
    for name in names:
        if outputs[name].ndim == 0:
            raise invalid(f"Tensor name: {name} has no shape information ")
        size = outputs[name].shape[0]
        if batch is not None and size != batch:
            raise invalid(f"Tensor name: {name} has inconsistent batch size: {size} expecting: {batch}")
        batch = size
    columns = {name: _to_json_values(name, outputs[name]) for name in names}
    if len(names) == 1:
        predictions = columns[names[0]]
    else:
        predictions = [{name: columns[name][row] for name in names} for row in range(batch)]
    return json.dumps({"predictions": predictions}, allow_nan=True)


def error_to_json(message: str) -> str:
    """TF Serving's error body."""
    return json.dumps({"error": message})
