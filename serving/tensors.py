"""numpy <-> `tensorflow.TensorProto`, written once for the server and the clients.

Decoding follows TensorFlow's `Tensor::FromProto`: `tensor_content` holds the
raw little-endian bytes of a numeric tensor; otherwise the typed field
(`float_val`, `int_val`, ... ) holds the values, where an empty field means
all zeros, a shorter one is padded with its last value and values beyond
the shape are ignored. Anything else
(negative or unknown dimensions, a wrong byte count, too many values, a
dtype with no numpy equivalent) is a `TensorError`; a tensor whose decoded
array would pass a size cap is a `TensorTooLarge`, refused before anything
is allocated.

Encoding writes `tensor_content` for numeric arrays (compact, what
`tf.make_tensor_proto` does) or, with `use_tensor_content=False`, the typed
fields (what TF Serving's `AsProtoField` puts in a PredictResponse).

Only numpy and the protobuf runtime are needed, never TensorFlow: the dtype
enums come from `serving.protos`, and both TensorFlow's TensorProto class and
the one of `serving.protos` are read (and filled, with `out=`) alike.

Example:

>>> proto = to_tensor_proto(np.array([[1, 2, 3]], np.int32))   # (1, 3) DT_INT32
>>> to_ndarray(proto)
array([[1, 2, 3]], dtype=int32)
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from rnnserve.serving import protos

# dtype enum -> (numpy dtype, TensorProto field holding the values).
_DTYPES = {
    protos.DT_FLOAT: (np.dtype(np.float32), "float_val"),
    protos.DT_DOUBLE: (np.dtype(np.float64), "double_val"),
    protos.DT_HALF: (np.dtype(np.float16), "half_val"),
    protos.DT_INT8: (np.dtype(np.int8), "int_val"),
    protos.DT_INT16: (np.dtype(np.int16), "int_val"),
    protos.DT_INT32: (np.dtype(np.int32), "int_val"),
    protos.DT_INT64: (np.dtype(np.int64), "int64_val"),
    protos.DT_UINT8: (np.dtype(np.uint8), "int_val"),
    protos.DT_UINT16: (np.dtype(np.uint16), "int_val"),
    protos.DT_UINT32: (np.dtype(np.uint32), "uint32_val"),
    protos.DT_UINT64: (np.dtype(np.uint64), "uint64_val"),
    protos.DT_BOOL: (np.dtype(np.bool_), "bool_val"),
    protos.DT_COMPLEX64: (np.dtype(np.complex64), "scomplex_val"),
    protos.DT_COMPLEX128: (np.dtype(np.complex128), "dcomplex_val"),
    protos.DT_STRING: (np.dtype(object), "string_val"),
}
_ENUM_OF = {numpy_dtype: enum for enum, (numpy_dtype, _) in _DTYPES.items()}


class TensorError(ValueError):
    """A TensorProto (or array) that cannot be converted; the message says why."""


class TensorTooLarge(TensorError):
    """A TensorProto whose decoded array would take more bytes than allowed."""


def dtype_name(enum: int) -> str:
    """The short TensorFlow name of a DataType enum: DT_FLOAT -> 'float'."""
    try:
        name = protos.DataType.Name(enum)
    except ValueError:
        return f"unknown dtype {enum}"
    return name[3:].lower() if name.startswith("DT_") else name


def numpy_dtype(enum: int) -> np.dtype:
    """The numpy dtype for a DataType enum (object for DT_STRING)."""
    if enum not in _DTYPES:
        raise TensorError(f"dtype {dtype_name(enum)} is not supported")
    return _DTYPES[enum][0]


def dtype_enum(dtype) -> int:
    """The DataType enum for a numpy dtype; strings and bytes are DT_STRING."""
    dtype = np.dtype(dtype)
    if dtype.kind in "OSU":
        return protos.DT_STRING
    if dtype not in _ENUM_OF:
        raise TensorError(f"numpy dtype {dtype} has no TensorFlow equivalent")
    return _ENUM_OF[dtype]


def shape_of(shape_proto) -> tuple[int, ...] | None:
    """A TensorShapeProto as a tuple (-1 for unknown dimensions), None if rank is unknown."""
    if shape_proto.unknown_rank:
        return None
    return tuple(dim.size for dim in shape_proto.dim)


def shape_text(shape) -> str:
    """A shape as TensorFlow prints it in messages: (2, 3) -> '[2,3]', () -> '[]'."""
    return "[" + ",".join(str(size) for size in shape) + "]"


def _strings(array: np.ndarray) -> list[bytes]:
    return [item.encode("utf-8") if isinstance(item, str) else bytes(item) for item in array.ravel()]


def to_tensor_proto(value, dtype=None, use_tensor_content: bool = True, out=None):
    """Encodes an array-like as a TensorProto.

    Args:
        value: a numpy array, scalar, nested list, `bytes` or `str`.
        dtype: optional numpy dtype to cast to first (default: keep `value`'s).
        use_tensor_content: write numeric values as raw bytes (`tensor_content`,
            default True) or into the typed repeated field (False).
        out: an empty TensorProto to fill, of either pool (TensorFlow's, or
            `serving.protos`'); e.g. `request.inputs["tokens"]`. Default: a
            new `serving.protos.TensorProto`.

    Returns:
        `out` (or the new TensorProto) with dtype, shape and values set.

    Example:

    >>> to_tensor_proto(["héllo"]).string_val
    [b'h\\xc3\\xa9llo']
    """
    array = np.asarray(value) if dtype is None else np.asarray(value, dtype=dtype)
    enum = dtype_enum(array.dtype)
    proto = protos.TensorProto() if out is None else out
    proto.dtype = enum
    for size in array.shape:
        proto.tensor_shape.dim.add(size=size)
    if enum == protos.DT_STRING:
        proto.string_val.extend(_strings(array))
        return proto
    numpy_type, field = _DTYPES[enum]
    array = array.astype(numpy_type.newbyteorder("<"), copy=False)
    if use_tensor_content:
        proto.tensor_content = array.tobytes()
    elif field == "half_val":
        proto.half_val.extend(array.view(np.uint16).ravel().tolist())
    elif field in ("scomplex_val", "dcomplex_val"):
        getattr(proto, field).extend(array.view(array.real.dtype).ravel().tolist())
    else:
        getattr(proto, field).extend(array.ravel().tolist())
    return proto


def to_ndarray(proto, max_bytes: int | None = None) -> np.ndarray:
    """Decodes a TensorProto into a numpy array (object array of bytes for strings).

    Args:
        proto: the TensorProto (TensorFlow's or `serving.protos`').
        max_bytes: reject tensors whose decoded array would take more bytes
            than this (elements x item size; 8 bytes, one pointer, per string).
            Checked before anything is allocated, so a 29-byte proto whose
            shape asks for 512 MiB is refused. None means no limit.

    Raises:
        TensorTooLarge: the decoded array would exceed `max_bytes`.
        TensorError: the proto is malformed.

    Example:

    >>> to_ndarray(to_tensor_proto(np.float32(0.5)))
    array(0.5, dtype=float32)
    """
    if proto.dtype not in _DTYPES:
        raise TensorError(f"dtype {dtype_name(proto.dtype)} is not supported")
    shape = tuple(dim.size for dim in proto.tensor_shape.dim)  # TF ignores `unknown_rank` here
    if any(size < 0 for size in shape):
        raise TensorError(f"tensor shape {list(shape)} has a negative dimension")
    numpy_type, field = _DTYPES[proto.dtype]
    count = math.prod(shape)
    size = count * numpy_type.itemsize  # np.dtype(object).itemsize is a pointer's 8 bytes
    if max_bytes is not None and size > max_bytes:
        raise TensorTooLarge(
            f"{dtype_name(proto.dtype)} tensor of shape {shape_text(shape)} takes {size} bytes, "
            f"more than the limit of {max_bytes}"
        )
    if proto.tensor_content:
        if proto.dtype == protos.DT_STRING:
            raise TensorError("a DT_STRING tensor cannot use tensor_content")
        if len(proto.tensor_content) != size:
            raise TensorError(f"tensor_content has {len(proto.tensor_content)} bytes, expected {size}")
        flat = np.frombuffer(proto.tensor_content, dtype=numpy_type.newbyteorder("<"))
        return flat.astype(numpy_type).reshape(shape)
    values = getattr(proto, field)
    per_element = 2 if field in ("scomplex_val", "dcomplex_val") else 1
    if len(values) % per_element:
        raise TensorError(f"{field} has an odd number of values for a complex tensor")
    used = min(len(values), count * per_element)  # TF ignores values beyond the shape
    if field == "half_val":
        stored = np.dtype(np.int64)  # float16 bit patterns, in an int32 field
    elif per_element == 2:
        stored = numpy_type.type(0).real.dtype  # (real, imaginary) pairs
    else:
        stored = numpy_type
    try:
        flat = np.fromiter(itertools.islice(values, used), dtype=stored, count=used)
    except OverflowError as error:
        raise TensorError(f"{field} holds a value out of range for {numpy_type}") from error
    if field == "half_val":
        flat = flat.astype(np.uint16).view(np.float16)
    elif per_element == 2:
        flat = flat.view(numpy_type)
    if flat.size == 0:  # an empty field means zeros ("" for strings)
        flat = np.array([b""], dtype=object) if proto.dtype == protos.DT_STRING else np.zeros(1, numpy_type)
    if flat.size < count:  # TF pads a short field with its last value
        padded = np.empty(count, dtype=numpy_type)
        padded[: flat.size] = flat
        padded[flat.size :] = flat[-1]
        flat = padded
    return flat[:count].reshape(shape)
