"""Per-frame arrays of one shape stored zlib-compressed one after another, with an offsets file: the source
cache's masks (`masks.z`, `mask_offsets.npy`)."""
from __future__ import annotations

import os
import zlib

import numpy as np


class BlobError(ValueError):
    """The stored bytes do not match their offsets or do not decompress."""


class Blobs:
    """Per-frame arrays of one shape, zlib-compressed one by one in `name`.z with their offsets in
    `offsets`.npy; a frame with no bytes is all zeros. Read through a memory map (the file stays readable when
    the entry is evicted meanwhile)."""

    def __init__(self, path: str, name: str, offsets: str, n: int, shape: tuple):
        self.shape = shape
        self.offsets = np.load(os.path.join(path, offsets))
        off, size = self.offsets, os.path.getsize(os.path.join(path, name))
        if off.shape != (n + 1,) or off[0] != 0 or (np.diff(off) < 0).any() or off[-1] != size:
            raise BlobError(f"{name} does not match its offsets")
        self.data = np.memmap(os.path.join(path, name), np.uint8, "r") if size else None
        self.name = name

    def __getitem__(self, idx: int) -> np.ndarray:
        start, end = int(self.offsets[idx]), int(self.offsets[idx + 1])
        if start == end:
            return np.zeros(self.shape, np.uint8)
        try:
            return np.frombuffer(zlib.decompress(self.data[start:end]), np.uint8).reshape(self.shape).copy()
        except (zlib.error, ValueError) as e:
            raise BlobError(f"{self.name} frame {idx}: {e}") from None


class BlobWriter:
    """Writes what Blobs reads: each array zlib-compressed (all zeros: no bytes), the offsets kept."""

    def __init__(self, path: str, level: int):
        self.file = open(path, "wb")
        self.level = level
        self.offsets = [0]

    def add(self, array: np.ndarray) -> None:
        data = zlib.compress(np.ascontiguousarray(array, np.uint8).tobytes(), self.level) if array.any() else b""
        self.file.write(data)
        self.offsets.append(self.offsets[-1] + len(data))
