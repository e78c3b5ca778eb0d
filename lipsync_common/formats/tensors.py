"""numpy <-> lipsync.v1.Tensor (raw little-endian bytes + dtype + shape, as in the KServe v2 protocol)."""
from __future__ import annotations

import numpy as np

from lipsync.v1 import common_pb2

_TO_NP = {
    common_pb2.DATA_TYPE_UINT8: np.dtype("<u1"),
    common_pb2.DATA_TYPE_INT16: np.dtype("<i2"),
    common_pb2.DATA_TYPE_INT32: np.dtype("<i4"),
    common_pb2.DATA_TYPE_INT64: np.dtype("<i8"),
    common_pb2.DATA_TYPE_FLOAT16: np.dtype("<f2"),
    common_pb2.DATA_TYPE_FLOAT32: np.dtype("<f4"),
}
_FROM_NP = {v: k for k, v in _TO_NP.items()}


class TensorError(ValueError):
    """A Tensor message that does not describe a valid array."""


def to_tensor(array: np.ndarray) -> common_pb2.Tensor:
    dt = array.dtype.newbyteorder("<") if array.dtype.byteorder == ">" else array.dtype
    code = _FROM_NP.get(np.dtype(dt).newbyteorder("<"))
    if code is None:
        raise TensorError(f"unsupported dtype {array.dtype}")
    data = np.ascontiguousarray(array, dtype=_TO_NP[code]).tobytes()
    return common_pb2.Tensor(dtype=code, shape=list(array.shape), data=data)


def from_tensor(
    msg: common_pb2.Tensor,
    *,
    dtype: np.dtype | type | None = None,
    ndim: int | None = None,
    trailing: tuple[int, ...] | None = None,
    finite: bool = False,
) -> np.ndarray:
    """Decode and validate. Raises TensorError with a message a caller can act on."""
    if msg.dtype not in _TO_NP:
        raise TensorError(f"tensor dtype {msg.dtype} is not a known DataType")
    np_dtype = _TO_NP[msg.dtype]
    if dtype is not None and np_dtype != np.dtype(dtype).newbyteorder("<"):
        raise TensorError(f"tensor dtype must be {np.dtype(dtype).name}, got {np_dtype.name}")
    shape = tuple(int(s) for s in msg.shape)
    if any(s < 0 for s in shape):
        raise TensorError(f"tensor shape {shape} has a negative dimension")
    if ndim is not None and len(shape) != ndim:
        raise TensorError(f"tensor must have {ndim} dimensions, got shape {shape}")
    if trailing is not None and shape[len(shape) - len(trailing):] != trailing:
        raise TensorError(f"tensor shape must end with {trailing}, got {shape}")
    expected = int(np.prod(shape, dtype=np.int64)) * np_dtype.itemsize
    if expected != len(msg.data):
        raise TensorError(f"tensor of shape {shape} and dtype {np_dtype.name} needs {expected} bytes, got {len(msg.data)}")
    array = np.frombuffer(msg.data, dtype=np_dtype).reshape(shape)
    if finite and np_dtype.kind == "f" and not np.isfinite(array).all():
        raise TensorError("tensor contains NaN or infinite values")
    return array
