import io

import pytest

from lipsync_common.chunks import ChunkError, ChunkWriter, iter_chunks


def test_contiguous_chunks_reassemble():
    out = io.BytesIO()
    w = ChunkWriter("x", out, 100)
    for off, piece, last in iter_chunks(b"0123456789", 3):
        w.add(off, piece, last)
    assert w.done and out.getvalue() == b"0123456789"


def test_gap_reorder_overflow_and_after_last():
    w = ChunkWriter("face media", io.BytesIO(), 8)
    w.add(0, b"abc", False)
    with pytest.raises(ChunkError, match="out of order"):
        w.add(5, b"xyz", False)
    with pytest.raises(ChunkError, match="limit of 8 bytes"):
        w.add(3, b"0123456", False)
    w.add(3, b"de", True)
    with pytest.raises(ChunkError, match="after the last chunk"):
        w.add(5, b"f", True)


def test_empty_stream_is_one_last_chunk():
    assert list(iter_chunks(b"", 4)) == [(0, b"", True)]
