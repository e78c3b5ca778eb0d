"""The one receive loop for "header first, then chunks" uploads (lipsync_common/edge/uploads.py)."""
import asyncio

import pytest

from lipsync.v1 import common_pb2, gateway_pb2
from lipsync_common.edge.uploads import UploadError, Uploads, receive
from lipsync_common.formats.chunks import ChunkWriter

FACE = gateway_pb2.MEDIA_KIND_FACE


def opts():
    return gateway_pb2.LipsyncRequest(options=common_pb2.LipsyncOptions())


def media(offset, data, last, kind=FACE):
    return gateway_pb2.LipsyncRequest(media=gateway_pb2.MediaChunk(
        kind=kind, chunk=common_pb2.Chunk(offset=offset, data=data, last=last)))


async def stream(msgs):
    for m in msgs:
        yield m


def run(msgs, tmp_path, max_bytes=100, max_total=0, until_complete=False):
    files = Uploads(ChunkWriter, max_bytes, max_total)

    def start(_):
        files.open(FACE, "face media", str(tmp_path / "face"))
        return lambda m: (m.kind, m.chunk)

    head = asyncio.run(receive(stream(msgs), "options", "media", start, files, again="options only once",
                               until_complete=until_complete))
    return head, files


def test_chunks_land_in_the_file(tmp_path):
    head, files = run([opts(), media(0, b"ab", False), media(2, b"c", True)], tmp_path)
    assert isinstance(head, common_pb2.LipsyncOptions) and files.complete
    assert open(files.paths[FACE], "rb").read() == b"abc"


def test_until_complete_stops_reading(tmp_path):
    _, files = run([opts(), media(0, b"a", True), gateway_pb2.LipsyncRequest()], tmp_path, until_complete=True)
    assert files.complete


@pytest.mark.parametrize("msgs, code, text", [
    ([], "INVALID_ARGUMENT", "the first message must carry the options"),
    ([media(0, b"a", True)], "INVALID_ARGUMENT", "the first message must carry the options"),
    ([opts(), opts()], "INVALID_ARGUMENT", "options only once"),
    ([opts(), media(1, b"a", True)], "INVALID_ARGUMENT", "out of order"),
    ([opts(), media(0, b"x" * 101, True)], "INVALID_ARGUMENT", "larger than the limit of 100 bytes"),
])
def test_errors_name_their_status(tmp_path, msgs, code, text):
    with pytest.raises(UploadError) as e:
        run(msgs, tmp_path)
    assert e.value.code == code and text in e.value.message


def test_total_size_is_resource_exhausted(tmp_path):
    with pytest.raises(UploadError) as e:
        run([opts(), media(0, b"x" * 60, False), media(60, b"x" * 60, True)], tmp_path, max_bytes=1000, max_total=100)
    assert e.value.code == "RESOURCE_EXHAUSTED"


def test_an_unfinished_file_is_named(tmp_path):
    _, files = run([opts(), media(0, b"a", False)], tmp_path)
    assert files.unfinished() == ["face media"]
