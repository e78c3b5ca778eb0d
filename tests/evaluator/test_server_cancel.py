"""A cancelled Evaluate stops its work: every frame tracked or embedded checks a stop signal the server sets when
the call ends, so the CPU is free again within a second (real server on 127.0.0.1)."""
import time

import grpc
import numpy as np
import psutil
import pytest

from lipsync.v1 import common_pb2, evaluator_pb2, evaluator_pb2_grpc
from tests import helpers
from tools.stack import Stack

CHUNK = 1024 * 1024


@pytest.fixture(scope="module")
def evaluator(tmp_path_factory):
    folder = tmp_path_factory.mktemp("eval-cancel")
    (folder / "tmp").mkdir()
    s = Stack.start(str(folder), services=("evaluator",),
                    env={"TMP_DIR": str(folder / "tmp"), "MODELS_DIR": str(folder / "models"),
                         "EVAL_FID_FRAMES": "4", "EVAL_CSIM_FRAMES": "4"})
    s.folder_path = str(folder)
    yield s
    s.stop()


cpu_s = helpers.cpu_s


def requests(files: dict[str, str]):
    yield evaluator_pb2.EvaluateRequest(config=evaluator_pb2.EvaluateConfig())
    for role, path in files.items():
        data = open(path, "rb").read()
        for i in range(0, len(data), CHUNK):
            yield evaluator_pb2.EvaluateRequest(file=evaluator_pb2.FileChunk(role=role, chunk=common_pb2.Chunk(
                offset=i, data=data[i:i + CHUNK], last=i + CHUNK >= len(data))))


def test_a_cancelled_evaluation_frees_the_cpu_within_a_second(evaluator, tmp_path):
    video = helpers.face_video(str(tmp_path / "long.mp4"), n=750)      # 30 s: far longer than the test waits
    wav = helpers.write_wav(str(tmp_path / "a.wav"), np.zeros(16000 * 30, np.float32))
    proc = psutil.Process(evaluator.procs["evaluator"].pid)
    with grpc.insecure_channel(evaluator.addrs["evaluator"]) as ch:
        call = evaluator_pb2_grpc.EvaluatorStub(ch).Evaluate.future(
            requests({"source": video, "generated": video, "audio": wav}), timeout=300)
        deadline = time.time() + 30
        while True:                             # the upload is in; wait until the tracking is under way
            before = cpu_s(proc)
            time.sleep(1.0)
            working = cpu_s(proc) - before
            if working > 0.15:
                break
            assert time.time() < deadline and not call.done(), "the evaluation never started working"
        time.sleep(1.0)
        assert not call.done(), "the evaluation finished before it could be cancelled"
        helpers.assert_cancel_frees_the_cpu(proc, call.cancel, working, evaluator.folder_path, "evaluator",
                                            "evaluation stopped")
