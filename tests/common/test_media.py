import io
import os

import av
import numpy as np
import pytest

from lipsync_common.formats import frame_reader, media, mp4
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


def _animated(path, n: int) -> str:
    """n frames of the portrait moving sideways, written by Pillow in the format of path's extension."""
    from PIL import Image
    face = helpers.face_image()
    frames = [Image.fromarray(np.roll(face, 8 * k, axis=1)) for k in range(n)]
    frames[0].save(path, save_all=n > 1, append_images=frames[1:], duration=100, loop=0)
    return str(path)


def test_an_animated_gif_is_a_video_and_a_gif_of_one_frame_an_image(tmp_path):
    info, frames = media.read_face_media(_animated(tmp_path / "a.gif", 10), max_pixels=10**8, max_frames=1000)
    frames = list(frames)
    assert not info.is_image and info.fps == pytest.approx(10)
    assert len(frames) == 10 and np.abs(frames[5].astype(int) - frames[0]).mean() > 5     # its own motion
    info, frames = media.read_face_media(_animated(tmp_path / "one.gif", 1), max_pixels=10**8, max_frames=1000)
    assert info.is_image and info.fps == 0 and len(list(frames)) == 1


def test_an_animated_webp_is_refused_with_what_to_send_instead(tmp_path):
    with pytest.raises(media.MediaError, match="animated WebP"):
        media.read_face_media(_animated(tmp_path / "a.webp", 3), max_pixels=10**8, max_frames=1000)


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


@pytest.mark.parametrize("channels", [1, 2])
def test_pcm16_wav_read_whole_equals_pyav_decoding(tmp_path, channels):
    """16-bit WAV skips PyAV's frame-by-frame decoding: the same samples, exactly, as PyAV's path gives them;
    a float WAV and a rate to convert still go through PyAV."""
    import wave
    rng = np.random.default_rng(3)
    x = (rng.standard_normal((16000 * 2 + 7, channels)) * 8000).clip(-32768, 32767).astype("<i2")
    path = str(tmp_path / "a.wav")
    with wave.open(path, "wb") as w:
        w.setnchannels(channels), w.setsampwidth(2), w.setframerate(16000), w.writeframes(x.tobytes())
    assert media._pcm16_wav(path, 60, None) is not None
    for mono in (False, True):
        ours, rate = media.decode_audio(path, 60, mono=mono)
        theirs, _ = media._decode_audio_av(path, 60, None)
        if mono and channels == 2:
            theirs = (0.5 * (theirs[0] + theirs[1]))[None, :]
        assert rate == 16000 and ours.dtype == np.float32 and np.array_equal(ours, theirs)
    assert media._pcm16_wav(path, 60, 48000) is None and media._pcm16_wav(path, 1, None) is None
    resampled, rate = media.decode_audio(path, 60, sample_rate=48000)
    assert rate == 48000 and abs(resampled.shape[1] - 3 * x.shape[0]) < 300
    y = (x[:, 0] / 32768.0).astype(np.float32)
    floats = helpers.encode_audio(str(tmp_path / "f.wav"), y, 16000, "pcm_f32le", "wav")
    assert media._pcm16_wav(floats, 60, None) is None            # a float WAV: PyAV decodes it
    assert np.allclose(media.decode_audio(floats, 60)[0][0][:len(y)], y, atol=1e-6)


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
    w = mp4.Mp4Writer(chunks.append, 96, 64, 25, lossless_rgb=True, audio=audio, audio_rate=48000)
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


def moving_square(n: int) -> list[np.ndarray]:
    """n frames of a bright square crossing a gradient, back and forth: each frame close to the one before."""
    base = np.zeros((64, 96, 3), np.uint8)
    base[..., 0] = np.linspace(0, 255, 96, dtype=np.uint8)[None, :]
    base[..., 1] = np.linspace(0, 255, 64, dtype=np.uint8)[:, None]
    frames = []
    for k in range(n):
        f = base.copy()
        f[20:40, k % 70:k % 70 + 20] = 255
        frames.append(f)
    return frames


def decoded_packets(path, frames: list[np.ndarray], lossless: bool) -> list:
    """The file has every frame (exact when lossless, close otherwise) with audio at 25 fps; its video packets,
    whose timestamps must run on without a gap."""
    decoded, fps, has_audio, _ = helpers.decode_video(str(path))
    assert fps == 25 and has_audio and len(decoded) == len(frames)
    if lossless:
        assert all(np.array_equal(a, b) for a, b in zip(decoded, frames))
    else:
        assert max(np.abs(a.astype(int) - b.astype(int)).mean() for a, b in zip(decoded, frames)) < 12
    with av.open(str(path)) as c:
        packets = [(p.pts, p.is_keyframe) for p in c.demux(video=0) if p.pts is not None]
    step = packets[1][0] - packets[0][0]
    assert [pts for pts, _ in packets] == [k * step for k in range(len(frames))]
    return packets


@pytest.mark.parametrize("lossless", [False, True])
def test_the_first_fragment_leaves_without_waiting_for_the_encoders_pipeline(tmp_path, lossless):
    """With 4 frame threads and 10 frames of lookahead x264 holds back ~14 frames: the first fragment (5 frames)
    must still leave once the keyframe after it is written, and the whole stays one file with every frame in
    order (the first fragment's frames come from a second encoder of the same settings)."""
    frames = moving_square(60)
    chunks, first_moof = [], None
    w = mp4.Mp4Writer(chunks.append, 96, 64, 25, lossless_rgb=lossless, first_fragment=5, threads=4, lookahead=10,
                      audio=np.zeros((1, 16000 * 3), np.float32), audio_rate=16000)
    # the first fragment's own encoder (its parameter sets equal the main one's), its threads on slices of a frame
    assert w.head is not None and "SLICE" in str(w.head.thread_type)
    for k, f in enumerate(frames):
        w.write(f)
        if first_moof is None and b"moof" in b"".join(chunks):
            first_moof = k + 1
    w.close()
    assert first_moof == 6, f"the first fragment came after {first_moof} frames, not 6"
    path = tmp_path / "o.mp4"
    path.write_bytes(b"".join(chunks))
    decoded_packets(path, frames, lossless)


@pytest.mark.parametrize("threads", [0, 2, 8, 24])
def test_the_sliced_first_fragment_encoder_has_the_main_encoders_parameter_sets(threads):
    """At 720p and any thread count the first fragment's sliced encoder writes the same SPS/PPS as the main one
    (else the writer drops it, and the first fragment waits for the main encoder's pipeline)."""
    w = mp4.Mp4Writer(lambda b: None, 1280, 720, 25, first_fragment=5, threads=threads)
    try:
        assert w.head is not None and "SLICE" in str(w.head.thread_type)
        assert w.head.extradata == w.video.codec_context.extradata
    finally:
        w.abort()


@pytest.mark.parametrize("size", [(1280, 720), (1920, 1080), (720, 1280)])
@pytest.mark.parametrize("threads", [0, 2, 8, 24])
def test_the_last_fragments_encoder_has_the_main_encoders_parameter_sets(size, threads):
    """The last fragment's encoder (slice threads, its own lookahead) writes the same SPS/PPS as the main one at
    common sizes and thread counts: else the writer goes on with the main encoder and the end waits for it."""
    w = mp4.Mp4Writer(lambda b: None, *size, 25, first_fragment=5, threads=threads)
    try:
        tail = w._twin_encoder(sliced=True, lookahead=mp4.TAIL_LOOKAHEAD)
        assert tail is not None and "SLICE" in str(tail.thread_type)
    finally:
        w.abort()


@pytest.mark.parametrize("first_fragment, lossless", [(5, False), (0, False), (5, True)])
def test_gops_encoded_at_once_splice_into_one_stream(tmp_path, first_fragment, lossless):
    """X264_GOP_ENCODERS: GOPs encoded by several encoders at once come out as one file with every frame, in
    order, contiguous timestamps and a keyframe at the start of each GOP; lossless output is exact."""
    frames = moving_square(90)
    chunks = []
    w = mp4.Mp4Writer(chunks.append, 96, 64, 25, lossless_rgb=lossless, first_fragment=first_fragment, threads=2,
                      gop_encoders=3, audio=np.zeros((1, 16000 * 4), np.float32), audio_rate=16000)
    assert w.gops is not None
    for f in frames:
        w.write(f)
    w.close()
    path = tmp_path / "o.mp4"
    path.write_bytes(b"".join(chunks))
    keys = [k for k, (_, key) in enumerate(decoded_packets(path, frames, lossless)) if key]
    start = first_fragment + 1 if first_fragment else 0
    assert keys == ([0, first_fragment] if first_fragment else []) + list(range(start, 90, 25))


@pytest.mark.parametrize("first_fragment, gop_encoders, lossless", [(5, 1, False), (0, 1, False), (5, 3, False),
                                                                    (5, 1, True)])
def test_the_last_fragment_leaves_as_it_comes_and_splices_into_one_stream(tmp_path, monkeypatch, first_fragment,
                                                                         gop_encoders, lossless):
    """LAST_FRAGMENT_S: x264 with 4 frame threads and 10 frames of lookahead holds ~14 frames back, which a render's
    end waits for. With a last fragment of 8 frames the main encoder (or the GOP encoders) is drained when they begin
    and they go through a sliced encoder without lookahead: once the last frame is written, every frame but at most
    one has left the encoders. The file is one stream: every frame in order, a keyframe where the tail begins."""
    frames, muxed = moving_square(60), []
    real_mux = mp4.Mp4Writer._mux_video

    def counting(self, packets):
        packets = list(packets)
        muxed.extend(packets)
        real_mux(self, packets)
    monkeypatch.setattr(mp4.Mp4Writer, "_mux_video", counting)

    def encode(last_fragment):
        chunks = []
        w = mp4.Mp4Writer(chunks.append, 96, 64, 25, lossless_rgb=lossless, first_fragment=first_fragment, threads=4,
                          lookahead=10, gop_encoders=gop_encoders, last_fragment=last_fragment, total_frames=60,
                          audio=np.zeros((1, 16000 * 3), np.float32), audio_rate=16000)
        muxed.clear()
        for f in frames:
            w.write(f)
        before_close = len(muxed)
        assert (w.tail is not None) == (last_fragment > 0)
        w.close()
        return before_close, b"".join(chunks)

    held_back, _ = encode(0)
    # lossy: ~14 frames held back; lossless (constant qp 0, no rate control lookahead): the frame threads' ~5
    assert held_back <= (55 if lossless else 52), f"x264 held back only {60 - held_back}: the test would not tell"
    before_close, data = encode(8)
    assert before_close >= 59
    path = tmp_path / "o.mp4"
    path.write_bytes(data)
    keys = [k for k, (_, key) in enumerate(decoded_packets(path, frames, lossless)) if key]
    start = first_fragment + 1 if first_fragment else 0
    assert keys == ([0, first_fragment] if first_fragment else []) + list(range(start, 52, 25)) + [52]


def test_no_last_fragment_where_the_main_encoder_would_have_no_frame():
    """The last fragment starts only after one GOP of the main encoder; before that none is made and the main
    encoder runs to the end as without it."""
    for total, first in ((10, 5), (8, 0), (6, 0)):
        w = mp4.Mp4Writer(lambda b: None, 96, 64, 25, first_fragment=first, last_fragment=8, total_frames=total)
        try:
            assert w.tail_at == 0
        finally:
            w.abort()
    for total, first, tail_at in ((38, 5, 0), (39, 5, 31), (60, 5, 52), (40, 0, 32), (33, 0, 25)):
        w = mp4.Mp4Writer(lambda b: None, 96, 64, 25, first_fragment=first, last_fragment=8, total_frames=total)
        assert w.tail_at == tail_at, (total, first)
        w.abort()


@pytest.mark.parametrize("fmt", ["yuv420p", "rgb24"])
def test_frames_wrapping_the_arrays_encode_exactly_as_copied_frames(fmt, monkeypatch):
    """mp4.video_frame wraps the array (no copy on the encoding thread): the encoded stream is byte for byte the
    one from PyAV's copying from_ndarray, frames in flight in a GOP encoder's queue included."""
    rgb = moving_square(60)
    frames = [np.ascontiguousarray(f) if fmt == "rgb24" else
              mp4.cv2.cvtColor(np.ascontiguousarray(f), mp4.cv2.COLOR_RGB2YUV_I420) for f in rgb]
    wrapped = mp4.video_frame(frames[0], fmt)
    frames[0][0, 0] ^= 1                                  # the frame sees the array's memory
    assert wrapped.to_ndarray().reshape(-1)[0] == frames[0].reshape(-1)[0]
    frames[0][0, 0] ^= 1

    def encode(gop_encoders):
        out = []
        w = mp4.Mp4Writer(out.append, 96, 64, 25, lossless_rgb=fmt == "rgb24", threads=2, gop_encoders=gop_encoders)
        for f in frames:
            w.write_converted(f.copy())
        w.close()
        return b"".join(out)

    wrapped_bytes = encode(1), encode(2)
    monkeypatch.setattr(mp4, "video_frame", lambda data, f: av.VideoFrame.from_ndarray(data, format=f))
    assert (encode(1), encode(2)) == wrapped_bytes


def test_the_audio_is_encoded_beside_the_video_and_an_abort_stops_it():
    """The AAC track is encoded in a thread of its own from the start; every sample is in the file, and an
    aborted writer leaves no encoding thread behind."""
    import threading
    frames = moving_square(50)
    audio = np.sin(np.arange(16000 * 2) * 2 * np.pi * 440 / 16000).astype(np.float32)[None] * 0.3
    out = []
    w = mp4.Mp4Writer(out.append, 96, 64, 25, threads=2, audio=audio, audio_rate=16000)
    for f in frames:
        w.write(f)
    w.close()
    assert not w.aac.thread.is_alive()
    with av.open(io.BytesIO(b"".join(out))) as c:
        decoded = np.concatenate([f.to_ndarray().reshape(-1) for f in c.decode(audio=0)])
    assert len(decoded) >= audio.shape[1] and np.abs(decoded).max() > 0.2
    long_audio = np.zeros((1, 16000 * 600), np.float32)          # ten minutes: far from done at the abort
    w = mp4.Mp4Writer([].append, 96, 64, 25, threads=2, audio=long_audio, audio_rate=16000)
    w.write(frames[0])
    w.abort()
    assert not w.aac.thread.is_alive()
    assert not [t for t in threading.enumerate() if t.name == "aac"]


def test_prefetch_keeps_order_raises_and_stops():
    import threading
    import time

    from lipsync_common.formats.frame_reader import prefetch
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
    # it reads ahead from the start, before the first next(); closed before it, the thread stops too
    early = []
    it = prefetch(iter(early.append(k) or k for k in range(10)), depth=3)
    deadline = time.monotonic() + 5
    while len(early) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(early) >= 3
    it.close()
    assert threading.active_count() == before and list(it) == []


def gop_video(path, n, size=(160, 120), gop=10, bf=2, rotation=0, pix_fmt="yuv420p"):
    """A moving portrait crop and a frame counter, keyframes every `gop` frames, `bf` B-frames: every frame
    differs, so a frame decoded from the wrong place shows."""
    import av

    w, h = size
    img = helpers.face_image()
    with av.open(path, "w") as c:
        s = c.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = w, h, pix_fmt
        s.options = {"g": str(gop), "keyint_min": str(gop), "bf": str(bf), "sc_threshold": "0"}
        if rotation:
            s.set_display_rotation(rotation)
        for i in range(n):
            f = np.full((h, w, 3), 90, np.uint8)
            x, y = int(10 + 8 * np.sin(i / 4)), int(5 + 4 * np.cos(i / 7))
            f[y:y + h // 2, x:x + w // 2] = img[150:150 + h // 2, 180:180 + w // 2]
            f[-8:, :8] = (i * 7) % 255
            for p in s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


def decoded(path):
    """What prepare sees: the frames, and the reader's index (pts, keyframes, fingerprints)."""
    info, it = media.read_face_media(path, 10**8, 10**5, timestamps=True)
    frames, pts, keys = zip(*it)
    return info, list(frames), dict(pts=list(pts), keyframes=list(keys),
                                    checks=[media.frame_check(f) for f in frames], size=(info.width, info.height))


def walk(n):
    """Rendering's walk: forward, backward, forward at half the frame rate, repeats, then random jumps."""
    rng = np.random.default_rng(0)
    return (list(range(n)) + list(range(n - 1, -1, -1)) + list(range(0, n, 2)) + [n // 2] * 3
            + list(rng.integers(0, n, 40)))


@pytest.mark.parametrize("kind", ["short gop", "long gop", "rotated odd size", "animated gif"])
def test_reader_gives_the_frames_prepare_decoded_in_any_order(tmp_path, kind):
    if kind == "animated gif":
        path = _animated(tmp_path / "a.gif", 12)
    elif kind == "short gop":
        path = gop_video(str(tmp_path / "v.mp4"), 60, gop=10, bf=2)
    elif kind == "long gop":          # x264's default: a keyframe every 250 frames, here only the first
        path = gop_video(str(tmp_path / "v.mp4"), 90, gop=250, bf=3)
    else:                             # a phone's portrait video, an odd size (4:4:4 allows it)
        path = gop_video(str(tmp_path / "v.mp4"), 40, size=(161, 121), gop=8, rotation=90, pix_fmt="yuv444p")
    info, frames, index = decoded(path)
    if kind == "rotated odd size":
        assert (info.width, info.height, info.rotation) == (121, 161, 90)
    with frame_reader.FrameReader(path, len(frames), window=8, **index) as reader:
        for i in walk(len(frames)):
            got = reader.get(i)
            assert np.array_equal(got, frames[i]), i
            assert not got.flags.writeable
        assert reader.stats["bad_seeks"] == 0
        if kind == "short gop":
            assert reader.stats["seeks"] > 0
    # fewer decoder threads (the renderer uses one) than prepare's: still the same pixels (ffmpeg is bit-exact
    # across thread counts; the fingerprints would notice otherwise)
    with frame_reader.FrameReader(path, len(frames), window=8, threads=1, **index) as reader:
        for i in walk(len(frames))[::3]:
            assert np.array_equal(reader.get(i), frames[i]), i
        assert reader.stats["bad_seeks"] == 0 and reader._checks is not None


def test_backward_walk_cost_and_memory_are_bounded(tmp_path):
    n, window = 120, 16
    path = gop_video(str(tmp_path / "v.mp4"), n, gop=250)          # one keyframe: the worst case
    _, frames, index = decoded(path)
    reader = frame_reader.FrameReader(path, n, window=window, **index)
    for i in range(n):
        reader.get(i)
    assert reader.stats["decoded"] == n and reader.stats["restarts"] == 1   # forward: one sequential decode
    for i in range(n - 1, -1, -1):
        assert np.array_equal(reader.get(i), frames[i])
        assert len(reader._window) <= window
    backward = reader.stats["decoded"] - n
    # a block of `window` frames per decode from the keyframe: about n^2 / (2 window), not n^2 / 2
    assert backward <= sum(range(n - window, 0, -window)) + n, backward
    reader.close()
    # the window follows the frame size: at most window_bytes of decoded frames
    frame_bytes = 160 * 120 * 3 // 2
    with frame_reader.FrameReader(path, n, window_bytes=5 * frame_bytes, **index) as small:
        small.get(30)
        assert 2 <= small.window <= 5 and len(small._window) <= small.window   # (planes are padded)
    with frame_reader.FrameReader(path, n, **index) as default:
        default.get(0)
        assert default.window == 48                                 # the cap, for small frames


def test_wrong_seek_information_still_gives_the_right_frames(tmp_path, caplog):
    path = gop_video(str(tmp_path / "v.mp4"), 50, gop=10)
    _, frames, index = decoded(path)
    order = list(range(49, -1, -1)) + [33, 7, 45]
    # a keyframe flag on a frame that is not one: the seek lands on the keyframe before it, frames are skipped
    keys = list(index["keyframes"])
    keys[15] = keys[35] = True
    with frame_reader.FrameReader(path, 50, window=4, **{**index, "keyframes": keys}) as reader:
        assert all(np.array_equal(reader.get(i), frames[i]) for i in order)
    # timestamps that do not match what the demuxer gives: those seek points are dropped, nothing else
    pts = list(index["pts"])
    pts[20] += 1
    with frame_reader.FrameReader(path, 50, window=4, **{**index, "pts": pts}) as reader:
        assert all(np.array_equal(reader.get(i), frames[i]) for i in order)
        assert reader.stats["bad_seeks"] > 0
    # a fingerprint that differs after a seek: the reader goes back further, down to decoding from the start;
    # there it cannot be the seek, so the fingerprints are no longer trusted (a warning), the frames still are
    checks = list(index["checks"])
    checks[25] ^= 1
    with frame_reader.FrameReader(path, 50, window=4, **{**index, "checks": checks}) as reader:
        assert all(np.array_equal(reader.get(i), frames[i]) for i in order)
        assert reader.stats["bad_seeks"] >= 2 and "does not match its recorded fingerprint" in caplog.text
    # no timestamps at all: no seeking, decoding from the start for every step back
    with frame_reader.FrameReader(path, 50, window=4, size=index["size"]) as reader:
        assert all(np.array_equal(reader.get(i), frames[i]) for i in order[:12])
        assert reader.stats["seeks"] == 0 and reader.stats["restarts"] > 1


def test_reader_of_a_still_image_and_of_a_deleted_file(tmp_path):
    png = helpers.write_png(str(tmp_path / "f.png"), helpers.face_image())
    _, frames, index = decoded(png)
    with frame_reader.FrameReader(png, 1, **index) as reader:
        assert np.array_equal(reader.get(0), frames[0]) and reader.get(0) is reader.get(0)
        with pytest.raises(IndexError):
            reader.get(1)
    path = gop_video(str(tmp_path / "v.mp4"), 30, gop=10)
    _, frames, index = decoded(path)
    reader = frame_reader.FrameReader(path, 30, window=4, **index)
    assert np.array_equal(reader.get(29), frames[29])
    os.remove(path)                                  # evicted from the cache while a render reads it
    assert all(np.array_equal(reader.get(i), frames[i]) for i in (3, 0, 17))
    reader.close()
    with pytest.raises(media.MediaError, match="decodes to"):
        with frame_reader.FrameReader(png, 1, size=(10, 10)) as reader:
            reader.get(0)
