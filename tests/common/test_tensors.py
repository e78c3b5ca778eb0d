import numpy as np
import pytest

from lipsync.v1 import common_pb2
from lipsync_common.formats.tensors import TensorError, from_tensor, to_tensor


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.int32, np.int64, np.float16, np.float32])
def test_round_trip(dtype):
    a = (np.arange(24).reshape(2, 3, 4) % 7).astype(dtype)
    msg = to_tensor(a)
    assert list(msg.shape) == [2, 3, 4]
    b = from_tensor(msg, dtype=dtype, ndim=3, trailing=(3, 4))
    assert b.dtype == dtype and np.array_equal(a, b)


def test_big_endian_input_is_stored_little_endian():
    a = np.arange(5, dtype=">i2")
    assert np.array_equal(from_tensor(to_tensor(a)), a)


@pytest.mark.parametrize("msg, kwargs, words", [
    (common_pb2.Tensor(dtype=common_pb2.DATA_TYPE_UINT8, shape=[2, 2], data=b"abc"), {}, "needs 4 bytes"),
    (common_pb2.Tensor(dtype=99, shape=[1], data=b"a"), {}, "not a known DataType"),
    (common_pb2.Tensor(dtype=common_pb2.DATA_TYPE_UINT8, shape=[-1], data=b""), {}, "negative"),
    (common_pb2.Tensor(dtype=common_pb2.DATA_TYPE_UINT8, shape=[4], data=b"abcd"), {"dtype": np.float32}, "must be float32"),
    (common_pb2.Tensor(dtype=common_pb2.DATA_TYPE_UINT8, shape=[4], data=b"abcd"), {"ndim": 2}, "2 dimensions"),
    (common_pb2.Tensor(dtype=common_pb2.DATA_TYPE_UINT8, shape=[1, 4], data=b"abcd"), {"trailing": (3,)}, "end with"),
])
def test_invalid_tensors_are_rejected(msg, kwargs, words):
    with pytest.raises(TensorError, match=words):
        from_tensor(msg, **kwargs)


def test_non_finite_values_are_rejected_when_asked():
    msg = to_tensor(np.array([0.0, np.nan], np.float32))
    from_tensor(msg)
    with pytest.raises(TensorError, match="NaN"):
        from_tensor(msg, finite=True)
