"""Reassemble a byte stream sent as lipsync.v1.Chunk messages, rejecting gaps and reordering."""
from __future__ import annotations

import os
from typing import BinaryIO


class ChunkError(ValueError):
    """Chunks that do not form one contiguous stream."""


class ChunkWriter:
    """Appends chunks to a file object; checks offsets, the `last` flag and a size cap."""

    def __init__(self, name: str, out: BinaryIO, max_bytes: int):
        self.name = name
        self.out = out
        self.max_bytes = max_bytes
        self.size = 0
        self.done = False

    def add(self, offset: int, data: bytes, last: bool) -> None:
        if self.done:
            raise ChunkError(f"{self.name}: chunk at offset {offset} after the last chunk")
        if offset != self.size:
            raise ChunkError(
                f"{self.name}: chunk at offset {offset} but {self.size} bytes received so far "
                "(chunks missing or out of order)")
        if self.size + len(data) > self.max_bytes:
            raise ChunkError(f"{self.name}: larger than the limit of {self.max_bytes} bytes")
        self.out.write(data)
        self.size += len(data)
        if last:
            self.done = True
            self.out.flush()


def file_chunks(path: str, chunk_size: int):
    """(offset, piece, last) for a file read in pieces; one empty last chunk for an empty file."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        offset = 0
        while True:
            piece = f.read(chunk_size)
            last = offset + len(piece) >= size
            yield offset, piece, last
            offset += len(piece)
            if last:
                return

