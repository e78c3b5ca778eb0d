import io

import pytest

from lipsync_common.formats.chunks import ChunkError, ChunkWriter, file_chunks


def test_contiguous_chunks_reassemble(tmp_path):
    (tmp_path / "f").write_bytes(b"0123456789")
    out = io.BytesIO()
    w = ChunkWriter("x", out, 100)
    pieces = list(file_chunks(str(tmp_path / "f"), 3))
    assert [p[2] for p in pieces] == [False, False, False, True]
    for off, piece, last in pieces:
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


def test_empty_file_is_one_last_chunk(tmp_path):
    (tmp_path / "e").write_bytes(b"")
    assert list(file_chunks(str(tmp_path / "e"), 4)) == [(0, b"", True)]
