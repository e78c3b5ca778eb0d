"""`lipsync live`: any audio file (or PCM on stdin) into a live session over a real stack; what comes back is written
as fMP4 + WAV, sample-aligned; an unusable file is a one-line error, not a traceback."""
import io
import sys
import wave

import av
import numpy as np
import pytest

from lipsync_client.cli import main
from lipsync_client.live_cli import read_pcm
from tests import helpers


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("live-cli")
    voice = helpers.speech_like([(1.0, True)], sr=44100)
    return {"stereo": helpers.write_wav(str(d / "stereo.wav"), np.stack([voice, 0.5 * voice], 1), sr=44100),
            "mono": helpers.write_wav(str(d / "mono.wav"), helpers.speech_like([(1.0, True)])),
            "face": helpers.write_png(str(d / "face.png"), helpers.face_image()),
            "text": str(d / "notes.txt"), "dir": d}


def test_a_stereo_wav_is_mixed_to_mono_at_its_rate(files):
    pcm, rate = read_pcm(files["stereo"], 16000)
    with wave.open(files["stereo"]) as w:
        both = np.frombuffer(w.readframes(w.getnframes()), "<i2").reshape(-1, 2).astype(float)
    mono = np.frombuffer(pcm, "<i2")
    assert rate == 44100 and len(mono) == len(both)
    assert np.abs(mono - both.mean(1)).max() <= 2          # the two channels' mean (rounding)


def test_a_float_wav_past_48_khz_comes_resampled_to_48_khz(files):
    path = str(files["dir"] / "float96k.wav")
    with av.open(path, "w") as c:
        stream = c.add_stream("pcm_f32le", rate=96000, layout="mono")
        frame = av.AudioFrame.from_ndarray(np.full((1, 96000), 0.25, np.float32), format="flt", layout="mono")
        frame.sample_rate = 96000
        for p in [*stream.encode(frame), *stream.encode(None)]:
            c.mux(p)
    pcm, rate = read_pcm(path, 16000)
    mono = np.frombuffer(pcm, "<i2")
    assert rate == 48000 and abs(len(mono) - 48000) <= 64 and abs(np.median(mono) - 0.25 * 32768) <= 2


def run_cli(capsys, *args) -> tuple[int, str, str]:
    rc = main(list(args))
    out = capsys.readouterr()
    return rc, out.out, out.err


def check_output(path: str, rate: int) -> int:
    with av.open(path) as c:
        frames = sum(1 for _ in c.decode(video=0))
    with wave.open(path[:-4] + ".wav") as w:
        assert w.getframerate() == rate and w.getnframes() == frames * rate // 25   # sample-aligned with the video
    return frames


def test_live_streams_a_stereo_wav_and_writes_video_and_sound(stack, files, capsys):
    out = str(files["dir"] / "live.mp4")
    rc, text, err = run_cli(capsys, "--target", stack.addrs["gateway"], "live", "--image", files["face"],
                            "--audio", files["stereo"], "--engine", "loudness", "--out", out)
    assert rc == 0, err
    assert check_output(out, 44100) >= 25 and "25 speech" in text and "latency from audio arrival" in text


def test_live_from_stdin_pcm(stack, files, capsys, monkeypatch):
    pcm = (helpers.speech_like([(0.6, True)], sr=8000) * 20000).astype("<i2").tobytes()
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(pcm)))
    out = str(files["dir"] / "stdin.mp4")
    rc, text, err = run_cli(capsys, "--target", stack.addrs["gateway"], "live", "--image", files["face"],
                            "--audio", "-", "--rate", "8000", "--engine", "loudness", "--out", out)
    assert rc == 0, err
    assert check_output(out, 8000) >= 15 and "15 speech" in text


def test_a_file_without_audio_is_a_one_line_error(stack, files, capsys):
    with open(files["text"], "w") as f:
        f.write("not audio\n" * 100)
    rc, _, err = run_cli(capsys, "--target", stack.addrs["gateway"], "live", "--image", files["face"],
                         "--audio", files["text"], "--out", str(files["dir"] / "x.mp4"))
    assert rc == 1 and err.startswith("lipsync: ") and files["text"] in err and "Traceback" not in err
