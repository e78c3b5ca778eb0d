import os

import numpy as np
import pytest

from lipsync_common import media
from tests import helpers


def test_face_video_frames_and_fps(tmp_path):
    path = helpers.face_video(str(tmp_path / "v.mp4"), n=12, fps=30)
    info, frames = media.read_face_media(path, max_pixels=10**8, max_frames=1000)
    frames = list(frames)
    assert (info.width, info.height, info.is_image) == (640, 480, False)
    assert info.fps == pytest.approx(30)
    assert len(frames) == 12 and frames[0].shape == (480, 640, 3)


def test_image_is_one_frame(tmp_path):
    path = helpers.write_png(str(tmp_path / "f.png"), helpers.face_image())
    info, frames = media.read_face_media(path, max_pixels=10**8, max_frames=1000)
    assert info.is_image and info.fps == 0 and len(list(frames)) == 1


@pytest.mark.parametrize("content", [b"", b"this is not a video at all\n" * 100, os.urandom(5000)])
def test_unreadable_face_media(tmp_path, content):
    path = tmp_path / "bad"
    path.write_bytes(content)
    with pytest.raises(media.MediaError):
        info, frames = media.read_face_media(str(path), max_pixels=10**8, max_frames=1000)
        list(frames)


def test_limits(tmp_path):
    path = helpers.face_video(str(tmp_path / "v.mp4"), n=5)
    with pytest.raises(media.MediaError, match="above the limit"):
        media.read_face_media(path, max_pixels=1000, max_frames=1000)
    with pytest.raises(media.MediaError, match="more than 3 frames"):
        list(media.read_face_media(path, max_pixels=10**8, max_frames=3)[1])


@pytest.mark.parametrize("codec, fmt, ext", [("libmp3lame", "mp3", "mp3"), ("aac", "ipod", "m4a")])
def test_compressed_audio_decodes_at_any_rate(tmp_path, codec, fmt, ext):
    x = helpers.speech_like([(1.0, True)], sr=44100)
    path = helpers.encode_audio(str(tmp_path / f"a.{ext}"), x, 44100, codec, fmt)
    native, rate = media.decode_audio(path, 60)
    assert rate == 44100 and native.shape[0] == 1
    assert abs(native.shape[1] / rate - 1.0) < 0.1
    mono16, r16 = media.decode_audio(path, 60, sample_rate=16000, mono=True)
    assert r16 == 16000 and abs(mono16.shape[1] - 16000) < 1600 and np.abs(mono16).max() > 0.1


def test_audio_limits_and_bad_audio(tmp_path):
    path = helpers.write_wav(str(tmp_path / "a.wav"), np.zeros(16000 * 3, np.float32))
    with pytest.raises(media.MediaError, match="longer than the limit"):
        media.decode_audio(path, 2)
    png = helpers.write_png(str(tmp_path / "x.png"), helpers.face_image())
    with pytest.raises(media.MediaError, match="no audio stream"):
        media.decode_audio(png, 60)


def test_fragmented_mp4_streams_before_close_and_is_lossless(tmp_path):
    chunks = []
    frames = [np.random.default_rng(i).integers(0, 255, (64, 96, 3), dtype=np.uint8) for i in range(60)]
    audio = np.zeros((1, 48000 * 2), np.float32)
    w = media.Mp4Writer(chunks.append, 96, 64, 25, lossless_rgb=True, audio=audio, audio_rate=48000)
    for f in frames[:40]:
        w.write(f)
    assert sum(map(len, chunks)) > 0, "fragments must be emitted before the end"
    for f in frames[40:]:
        w.write(f)
    w.close()
    path = tmp_path / "o.mp4"
    path.write_bytes(b"".join(chunks))
    decoded, fps, has_audio, audio_s = helpers.decode_video(str(path))
    assert fps == 25 and has_audio and abs(audio_s - 2.0) < 0.05
    assert len(decoded) == 60 and all(np.array_equal(a, b) for a, b in zip(decoded, frames))


def test_prefetch_keeps_order_raises_and_stops():
    import threading

    from lipsync_common.media import prefetch
    assert list(prefetch(iter(range(50)), depth=3)) == list(range(50))

    def failing():
        yield 1
        raise media.MediaError("broken tail")
    it = prefetch(failing())
    assert next(it) == 1
    with pytest.raises(media.MediaError, match="broken tail"):
        next(it)
    produced = []

    def endless():
        i = 0
        while True:
            produced.append(i)
            yield i
            i += 1
    before = threading.active_count()
    it = prefetch(endless(), depth=2)
    assert [next(it) for _ in range(5)] == list(range(5))
    it.close()
    assert threading.active_count() == before and len(produced) <= 5 + 4
