"""Audio -> timed phonemes -> viseme tracks with the speech models that ship in registry packages (no download)."""
import numpy as np
import pytest

from lipsync_common.formats import media
from services.generator.engines.warp.speech import SHAPES, Phone, Speech, viseme_tracks


@pytest.fixture(scope="module")
def speech():
    return Speech()


def test_real_speech_gives_words_phones_and_closures(speech, shared_file):
    audio, _ = media.decode_audio(shared_file("eng.wav"), 60, 16000, mono=True)
    phones, path = speech.timed_phones(audio[0][:16000 * 10])
    assert "whisper" in path and len(phones) > 40
    assert all(b.start >= a.start for a, b in zip(phones, phones[1:])) and all(p.end > p.start for p in phones)
    assert phones[0].start > 2.0          # the clip's first word starts after ~2.6 s of lead-in
    bilabials = [p for p in phones if p.phone in ("M", "B", "P")]
    assert len(bilabials) >= 4            # "maintains", "President", "Biden's", "big", ...
    tracks = viseme_tracks(phones, 25.0, 250)
    assert tracks.shape == (250, len(SHAPES)) and np.allclose(tracks.sum(1), 1, atol=1e-5)
    closed = SHAPES.index("closed")
    for p in bilabials:                   # the mouth is fully closed in the middle of every closure
        f = int((p.start + p.end) / 2 * 25)
        if p.start <= (f + 0.5) / 25 < p.end:
            assert tracks[f, closed] == pytest.approx(1.0)
    assert tracks[:50, SHAPES.index("rest")].min() > 0.99        # silence before the first word: rest


def test_cmudict_and_unknown_words(speech):
    assert speech.phones_of("Hello,") == ["HH", "AH", "L", "OW"]
    assert speech.phones_of("zxqv") == ["Z", "K", "K", "V"]          # a rough guess, never an error
    assert speech.phones_of("...") == []


def test_coarticulation_anticipates_and_blends():
    phones = [Phone("AA", 0.20, 0.40), Phone("UW", 0.40, 0.60)]
    tracks = viseme_tracks(phones, 100.0, 80)
    open_, round_ = SHAPES.index("open"), SHAPES.index("round")
    assert tracks[18, open_] > 0.3                    # 40 ms anticipation (+ smoothing) before 0.20 s
    assert 0.2 < tracks[40, round_] < 0.8             # blended at the boundary, no hard switch
    assert tracks[75, SHAPES.index("rest")] > 0.9


def test_silence_and_noise_are_rest(speech):
    rng = np.random.default_rng(0)
    for audio in (np.zeros(16000 * 3, np.float32), (0.02 * rng.standard_normal(16000 * 3)).astype(np.float32)):
        phones, _ = speech.timed_phones(audio)
        tracks = viseme_tracks(phones, 25.0, 75)
        assert tracks[:, SHAPES.index("rest")].mean() > 0.5
