"""serving.tensors against TensorFlow's own TensorProto codec.

Oracles: `tf.make_tensor_proto` (what clients send), and
`tf.io.parse_tensor`, which runs the C++ `Tensor::FromProto` that TF
Serving uses to read request tensors.
"""

import tracemalloc

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2, types_pb2

from rnnserve.serving import tensors

ARRAYS = [
    np.array([[1.5, -2.25], [3.0, 4.0]], np.float32),
    np.array([1e300, -0.0], np.float64),
    np.array([[1, -2, 3]], np.int32),
    np.array([2**40, -5], np.int64),
    np.array([1, 255], np.uint8),
    np.array([-128, 127], np.int8),
    np.array([1, 65535], np.uint16),
    np.array([True, False]),
    np.array([0.5, 65504.0], np.float16),
    np.array([1 + 2j, -3j], np.complex64),
    np.array([2**33], np.uint64),
    np.float32(3.25),
    np.zeros((0, 3), np.float32),
    np.array([b"a", b"\xff\x00bytes", "héllo".encode()], dtype=object),
]


def _parse_like_tf_serving(proto: tensor_pb2.TensorProto):
    return tf.io.parse_tensor(proto.SerializeToString(), out_type=tf.as_dtype(proto.dtype)).numpy()


@pytest.mark.parametrize("array", ARRAYS, ids=lambda a: str(a.dtype))
@pytest.mark.parametrize("use_tensor_content", [True, False])
def test_our_encoding_decodes_identically_in_tensorflow(array, use_tensor_content):
    proto = tensors.to_tensor_proto(array, use_tensor_content=use_tensor_content)
    expected = _parse_like_tf_serving(proto)
    np.testing.assert_array_equal(tensors.to_ndarray(proto), expected)
    assert tensors.to_ndarray(proto).dtype == (expected.dtype if array.dtype != object else object)


@pytest.mark.parametrize("array", ARRAYS, ids=lambda a: str(a.dtype))
def test_we_decode_what_tf_make_tensor_proto_encodes(array):
    proto = tf.make_tensor_proto(array)
    np.testing.assert_array_equal(tensors.to_ndarray(proto), tf.make_ndarray(proto))


@pytest.mark.parametrize(
    "field, values, shape, expected",
    [
        ("float_val", [], [2, 2], np.zeros((2, 2), np.float32)),  # empty field: zeros
        ("float_val", [7.0], [3], np.full(3, 7.0, np.float32)),  # one value: broadcast
        ("float_val", [1.0, 2.0], [4], np.array([1, 2, 2, 2], np.float32)),  # short: pad with last
        ("float_val", [1.0, 2.0, 3.0], [2], np.array([1, 2], np.float32)),  # long: extra values ignored
    ],
)
def test_short_typed_fields_follow_tensor_from_proto(field, values, shape, expected):
    proto = tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT)
    getattr(proto, field).extend(values)
    for size in shape:
        proto.tensor_shape.dim.add(size=size)
    np.testing.assert_array_equal(
        _parse_like_tf_serving(proto), expected
    )  # the oracle agrees with `expected`
    np.testing.assert_array_equal(tensors.to_ndarray(proto), expected)


def _malformed():
    wrong_bytes = tensor_pb2.TensorProto(dtype=types_pb2.DT_INT32, tensor_content=b"\x00" * 5)
    wrong_bytes.tensor_shape.dim.add(size=2)
    negative = tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT)
    negative.tensor_shape.dim.add(size=-1)
    invalid_dtype = tensor_pb2.TensorProto(dtype=types_pb2.DT_INVALID)
    return {"wrong_byte_count": wrong_bytes, "negative_dim": negative, "dt_invalid": invalid_dtype}


@pytest.mark.parametrize("name", sorted(_malformed()))
def test_malformed_protos_are_rejected_by_both(name):
    proto = _malformed()[name]
    with pytest.raises(tensors.TensorError):
        tensors.to_ndarray(proto)
    with pytest.raises((tf.errors.InvalidArgumentError, TypeError, ValueError)):
        _parse_like_tf_serving(proto)


def _short_field(dtype, field, values, shape) -> tensor_pb2.TensorProto:
    """A typed-field proto whose few values TensorFlow pads to the whole shape."""
    proto = tensor_pb2.TensorProto(dtype=dtype)
    getattr(proto, field).extend(values)
    for size in shape:
        proto.tensor_shape.dim.add(size=size)
    return proto


def test_the_size_cap_refuses_a_29_byte_proto_that_would_decode_to_512_mib_before_allocating():
    proto = _short_field(types_pb2.DT_COMPLEX128, "dcomplex_val", [1.0, 2.0], [2**25])
    assert len(proto.SerializeToString()) < 32  # 2**25 complex128 values (16 bytes each) = 512 MiB
    tracemalloc.start()  # numpy reports its buffers to tracemalloc
    try:
        with pytest.raises(
            tensors.TensorTooLarge, match=r"complex128 tensor of shape \[33554432\] takes 536870912 bytes"
        ):
            tensors.to_ndarray(proto, max_bytes=32 * 2**20)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 2**20


@pytest.mark.parametrize(
    "dtype, field, itemsize",
    [
        (types_pb2.DT_FLOAT, "float_val", 4),
        (types_pb2.DT_INT64, "int64_val", 8),
        (types_pb2.DT_STRING, "string_val", 8),  # one object pointer per string
    ],
)
def test_the_size_cap_is_elements_times_item_size(dtype, field, itemsize):
    value = b"x" if dtype == types_pb2.DT_STRING else 1
    at_cap = _short_field(dtype, field, [value], [4, 256 // itemsize])
    np.testing.assert_array_equal(tensors.to_ndarray(at_cap, max_bytes=1024), _parse_like_tf_serving(at_cap))
    over_cap = _short_field(dtype, field, [value], [4, 256 // itemsize + 1])
    with pytest.raises(tensors.TensorTooLarge):
        tensors.to_ndarray(over_cap, max_bytes=1024)
