"""A cancelled Prepare stops its work: the frame loop checks a stop signal the server sets when the call ends,
so the CPU is free again within a second instead of after the whole video (real server on 127.0.0.1)."""
import time

import grpc
import psutil
import pytest

from lipsync.v1 import common_pb2, preprocess_pb2, preprocess_pb2_grpc
from tests import helpers
from tools.stack import Stack

CHUNK = 1024 * 1024


@pytest.fixture(scope="module")
def preprocess(tmp_path_factory):
    folder = tmp_path_factory.mktemp("prep-cancel")
    (folder / "tmp").mkdir()
    s = Stack.start(str(folder), services=("preprocess",),
                    env={"TMP_DIR": str(folder / "tmp"), "MODELS_DIR": str(folder / "models")})
    s.folder_path = str(folder)
    yield s
    s.stop()


cpu_s = helpers.cpu_s


def requests(path: str):
    yield preprocess_pb2.PrepareRequest(options=preprocess_pb2.PrepareOptions())
    data = open(path, "rb").read()
    for i in range(0, len(data), CHUNK):
        yield preprocess_pb2.PrepareRequest(media=common_pb2.Chunk(
            offset=i, data=data[i:i + CHUNK], last=i + CHUNK >= len(data)))


def test_a_cancelled_prepare_frees_the_cpu_within_a_second(preprocess, tmp_path):
    video = helpers.face_video(str(tmp_path / "long.mp4"), n=900)     # far longer than the test waits
    proc = psutil.Process(preprocess.procs["preprocess"].pid)
    with grpc.insecure_channel(preprocess.addrs["preprocess"]) as ch:
        call = preprocess_pb2_grpc.PreprocessStub(ch).Prepare(requests(video), timeout=120)
        for resp in call:                       # the work is under way once progress comes
            assert resp.WhichOneof("payload") == "progress", "the video was prepared before it could be cancelled"
            if resp.progress.done >= 20:
                break
        before = cpu_s(proc)
        time.sleep(1.0)
        working = cpu_s(proc) - before
        assert working > 0.15, "the preparation should be using the CPU"
        helpers.assert_cancel_frees_the_cpu(proc, call.cancel, working, preprocess.folder_path, "preprocess",
                                            "prepare stopped")


def test_prepare_still_completes(preprocess, tmp_path):
    video = helpers.face_video(str(tmp_path / "short.mp4"), n=12)
    with grpc.insecure_channel(preprocess.addrs["preprocess"]) as ch:
        out = list(preprocess_pb2_grpc.PreprocessStub(ch).Prepare(requests(video), timeout=120))
    assert out[-1].prepared.num_frames == 12 and out[-1].prepared.frames_with_face == 12
