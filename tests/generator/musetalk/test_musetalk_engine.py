"""The musetalk engine through the real services, with tiny random weights in the official layout.

Random weights make noise, not lip-sync: these tests check loading, batching, caching and streaming."""
import os
import threading

import numpy as np
import pytest

from lipsync.v1 import common_pb2
from lipsync_client import LipsyncClient
from services.generator.engines.musetalk.engine import MuseTalkEngine, MuseTalkSettings, missing_files
from tests import helpers
from tests.generator.musetalk.tiny_musetalk import write_tiny_models
from tools.stack import Stack


def test_missing_and_partial_models_dir_lists_exactly_what_is_missing(tmp_path):
    assert len(missing_files(str(tmp_path), "v15")) == 7
    write_tiny_models(str(tmp_path), versions=("v15",))
    assert missing_files(str(tmp_path), "v15") == []
    assert missing_files(str(tmp_path), "v1") == ["musetalk/pytorch_model.bin", "musetalk/musetalk.json"]
    os.remove(tmp_path / "sd-vae" / "config.json")
    engine = MuseTalkEngine(str(tmp_path))
    ok, why = engine.available()
    assert not ok and "missing sd-vae/config.json." in why and "make weights" in why


@pytest.fixture(scope="module")
def musetalk_stack(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mt")
    write_tiny_models(str(folder / "models"), versions=("v15",))
    stack = Stack.start(str(folder / "stack"), env={"MODELS_DIR": str(folder / "models"), "MUSETALK_MAX_BATCH": "8"})
    yield stack
    stack.stop()


def test_generates_through_the_services_and_caches_latents(musetalk_stack, tmp_path):
    face = helpers.face_video(str(tmp_path / "v.mp4"), n=6)
    audio = helpers.write_wav(str(tmp_path / "a.wav"), helpers.speech_like([(0.8, True)]))
    with LipsyncClient(musetalk_stack.addrs["gateway"]) as c:
        s = c.lipsync(face, audio, str(tmp_path / "o.mp4"), common_pb2.LipsyncOptions(engine="musetalk"))
        assert s.engine == "musetalk" and s.frames == 20
        auto = c.lipsync(face, audio, str(tmp_path / "o2.mp4"), common_pb2.LipsyncOptions())
        assert auto.engine == "musetalk"      # auto picks musetalk when its weights are there
        v1 = c.lipsync(face, audio, str(tmp_path / "o3.mp4"),
                       common_pb2.LipsyncOptions(model_version=common_pb2.MODEL_VERSION_V1))
        assert v1.engine == "visemes"         # ... and the weight-free default when not (no v1 files)
    frames, _, has_audio, _ = helpers.decode_video(str(tmp_path / "o.mp4"))
    assert len(frames) == 20 and has_audio
    cache = os.path.join(musetalk_stack.folder, "cache")
    latents = [f for _, _, files in os.walk(os.path.join(cache, "derived")) for f in files if f.startswith("latents-")]
    assert len(latents) == 1, "reference latents are computed once per source, kept in the derived-data area"
    entries = [d for d in os.listdir(cache) if not d.startswith(".") and d != "derived"]
    assert not any(f.startswith("latents-") for d in entries for f in os.listdir(os.path.join(cache, d)))


def test_concurrent_requests_each_get_their_own_frames(musetalk_stack, tmp_path):
    faces = [helpers.face_video(str(tmp_path / f"v{i}.mp4"), n=4 + i) for i in range(3)]
    audio = helpers.write_wav(str(tmp_path / "a.wav"), helpers.speech_like([(0.6, True)]))
    results = {}

    def run(i):
        with LipsyncClient(musetalk_stack.addrs["gateway"]) as c:
            results[i] = c.lipsync(faces[i], audio, str(tmp_path / f"o{i}.mp4"),
                                   common_pb2.LipsyncOptions(engine="musetalk", codec=common_pb2.VIDEO_CODEC_H264_LOSSLESS_RGB))

    threads = [threading.Thread(target=run, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    for i in range(3):
        assert results[i].frames == 15
        out, _, _, _ = helpers.decode_video(str(tmp_path / f"o{i}.mp4"))
        src, _, _, _ = helpers.decode_video(faces[i])
        # the frame marker (outside the mask) shows each request got its own source frames, in order
        order = [next(k for k, s in enumerate(src) if np.array_equal(f[:16, :16], s[:16, :16])) for f in out]
        n = 4 + i
        assert order == [k if k < n else 2 * n - 1 - k for k in (t % (2 * n) for t in range(15))]


def test_weights_verify_is_offline_and_catches_a_changed_file(tmp_path, capsys):
    from tools import weights
    (tmp_path / "sd-vae").mkdir()
    (tmp_path / "sd-vae" / "config.json").write_text("{}")
    assert weights.verify(str(tmp_path)) == 1                      # no SHA256SUMS yet
    digest = weights.sha256(str(tmp_path / "sd-vae" / "config.json"))
    (tmp_path / "SHA256SUMS").write_text(f"{digest}  sd-vae/config.json\n")
    assert weights.verify(str(tmp_path)) == 0
    (tmp_path / "sd-vae" / "config.json").write_text('{"changed": 1}')
    assert weights.verify(str(tmp_path)) == 1 and "BAD" in capsys.readouterr().err



@pytest.fixture(scope="module")
def cpu_engine(tmp_path_factory):
    folder = tmp_path_factory.mktemp("engine")
    write_tiny_models(str(folder / "models"), versions=("v15",))
    engine = MuseTalkEngine(str(folder / "models"), MuseTalkSettings(device="cpu", max_batch=16))
    engine.load()
    os.makedirs(folder / "src")
    yield engine, helpers.prepared_entry(str(folder / "src"), n=4)
    engine.close()


@pytest.mark.parametrize("fps, priority, messages, first_batch", [
    (25.0, "interactive", [4, 8, 8, 8], 4),     # 0.12 s + 1 frame (the start of render's first fragment)
    (100.0, "interactive", [8, 5, 8, 8], 13),   # a longer head is still cut where it ends
    (25.0, "batch", [8, 8, 8, 8], 16),          # bulk requests get no head start: a full batch
])
def test_a_new_requests_head_is_what_the_first_fragment_needs_and_leaves_in_its_own_message(
        cpu_engine, fps, priority, messages, first_batch):
    engine, entry = cpu_engine
    batcher = engine.batchers["v15"]
    before = len(batcher.batch_sizes)
    audio = np.zeros(int(16000 * 40 / fps), np.float32)            # 40 frames
    sizes = [len(b) for b in engine.generate(entry, audio, 16000, fps, 8, priority=priority).batches]
    assert sizes[:4] == messages and sum(sizes) == 40
    assert batcher.batch_sizes[before] == first_batch              # alone, a head runs in a batch of its own
