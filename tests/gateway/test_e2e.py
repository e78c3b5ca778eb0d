"""The whole flow through real services: upload -> prepare -> generate -> render -> MP4 on disk."""
import hashlib
import os

import numpy as np
import pytest

from lipsync.v1 import common_pb2
from lipsync_common.formats.source_cache import SourceCache, source_frame
from lipsync_common.faces import landmarks as L
from lipsync_common.faces.landmarks import Landmarker
from services.preprocess.prepare import PrepareOptions, source_id
from services.render.render import frame_mask
from tests import helpers

LOSSLESS = common_pb2.VIDEO_CODEC_H264_LOSSLESS_RGB


def audio_levels(path: str, fps: float, frames: int) -> np.ndarray:
    from lipsync_common.formats.media import decode_audio
    a, sr = decode_audio(path, 600, sample_rate=16000, mono=True)
    step = sr / fps
    return np.array([np.sqrt(np.mean(a[0, int(t * step):int((t + 1) * step)] ** 2) + 1e-12) for t in range(frames)])


def check_outside_mask(stack, face_path, source_frames, out_frames, opts, src_fps, out_fps):
    cache = SourceCache(os.path.join(stack.folder, "cache"))
    sid = source_id(hashlib.sha256(open(face_path, "rb").read()).hexdigest(), opts)
    entry = cache.get(sid)
    changed_inside = 0
    for t, out in enumerate(out_frames):
        idx = source_frame(t, len(source_frames), src_fps, out_fps)
        src = source_frames[idx]
        bm = frame_mask(entry, idx)
        outside = np.ones(src.shape[:2], bool)
        if bm is not None:
            (x1, y1, x2, y2), alpha = bm
            outside[y1:y2, x1:x2] = alpha == 0
            changed_inside += int(not np.array_equal(out[~outside], src[~outside]))
        assert np.array_equal(out[outside], src[outside]), f"frame {t}: a pixel outside the mask changed"
    return changed_inside


def lip_gaps(frames):
    lm = Landmarker()
    gaps = []
    with lm.session(static=False) as s:
        for f in frames:
            pts = s.process(f)
            gaps.append(np.nan if pts is None else float(pts[L.LOWER_INNER, 1] - pts[L.UPPER_INNER, 1]))
    return np.array(gaps)


def test_demo_sample_image(stack, client, tmp_path, assert_healthy):
    face = helpers.write_png(str(tmp_path / "face.png"), helpers.face_image())
    out = str(tmp_path / "out.mp4")
    events = []
    s = client.lipsync(face, helpers.DEMO_SPEECH, out, common_pb2.LipsyncOptions(codec=LOSSLESS),
                       on_progress=events.append)
    frames, fps, has_audio, audio_s = helpers.decode_video(out)
    # duration follows the audio (8.21 s at 25 fps -> 205 frames), an image becomes a video
    assert s.frames == len(frames) == 205 and fps == 25 and s.engine == "visemes"
    assert s.engine_detail.startswith("visemes: whisper tiny.en words") and "pocketsphinx" in s.engine_detail
    assert has_audio and abs(audio_s - 8.214) < 0.15   # AAC pads up to two 1024-sample frames (16 kHz)
    assert frames[0].shape == (512, 512, 3) and (s.width, s.height) == (512, 512)
    assert {e.stage for e in events} >= {common_pb2.STAGE_PREPROCESS, common_pb2.STAGE_GENERATE,
                                         common_pb2.STAGE_RENDER, common_pb2.STAGE_DONE}
    assert {t.stage for t in s.timings} == {common_pb2.STAGE_AUDIO, common_pb2.STAGE_PREPROCESS,
                                           common_pb2.STAGE_GENERATE, common_pb2.STAGE_RENDER}
    changed = check_outside_mask(stack, face, [helpers.face_image()], frames, PrepareOptions(), 0, 25)
    assert changed > 100

    # the mouth moves with speech and rests in silence
    level = audio_levels(helpers.DEMO_SPEECH, 25, len(frames))
    quiet = np.r_[True, True, level < 1e-3, True, True]
    silent = np.all([quiet[k:k + len(level)] for k in range(5)], axis=0)   # silent, and so are 2 neighbours
    voiced = level > 0.03
    assert silent.sum() > 15 and voiced.sum() > 60
    mouth = [f[110:190, 170:290].astype(int) for f in frames]   # around the astronaut's mouth
    rest = mouth[int(np.flatnonzero(silent)[0])]
    moved = np.array([np.abs(m - rest).mean() for m in mouth])
    assert moved[silent].max() == 0, "every silent frame shows the same closed mouth"
    assert moved[voiced].mean() > 2.0
    gaps = lip_gaps(frames)
    assert np.nanmean(gaps[voiced]) > np.nanmean(gaps[silent]) + 4
    assert np.corrcoef(np.nan_to_num(gaps), level)[0, 1] > 0.4


def test_stream_sends_video_before_the_job_ends(stack, gateway_stub, tmp_path, assert_healthy):
    from lipsync_client.client import upload_requests
    face = helpers.write_png(str(tmp_path / "face.png"), helpers.face_image())
    kinds = []
    for resp in gateway_stub.Lipsync(upload_requests(face, helpers.DEMO_SPEECH, common_pb2.LipsyncOptions())):
        kind = resp.WhichOneof("payload")
        kinds.append((kind, resp.progress.stage if kind == "progress" else None))
    first_video = kinds.index(("video", None))
    later_generate = [k for k in kinds[first_video:] if k == ("progress", common_pb2.STAGE_GENERATE)]
    assert later_generate, "the first MP4 bytes must arrive while frames are still being generated"
    assert kinds[-1][0] == "summary"


def test_yongen_video_with_its_audio_at_30fps(shared_file, stack, client, tmp_path, assert_healthy):
    video, audio = shared_file("yongen.mp4"), shared_file("yongen.wav")
    out = str(tmp_path / "yongen.mp4")
    s = client.lipsync(video, audio, out, common_pb2.LipsyncOptions(fps=30, codec=LOSSLESS))
    frames, fps, has_audio, audio_s = helpers.decode_video(out)
    source, src_fps, _, _ = helpers.decode_video(video)
    assert fps == 30 and s.fps == 30 and len(frames) == s.frames == 240   # 8.0 s of audio at 30 fps
    assert has_audio and abs(audio_s - 8.0) < 0.05     # 48 kHz: AAC padding is under 43 ms
    assert frames[0].shape == source[0].shape == (1216, 704, 3)
    check_outside_mask(stack, video, source, frames, PrepareOptions(), src_fps, 30)
    level = audio_levels(audio, 30, len(frames))
    gaps = lip_gaps(frames)
    ok = ~np.isnan(gaps)
    assert ok.mean() > 0.9
    assert np.corrcoef(gaps[ok], level[ok])[0, 1] > 0.3


def test_audio_longer_than_video_cycles_forward_then_backward(stack, client, tmp_path, assert_healthy):
    video = helpers.face_video(str(tmp_path / "v.mp4"), n=10, fps=25)
    audio = helpers.write_wav(str(tmp_path / "a.wav"), helpers.speech_like([(1.0, True)]))
    out = str(tmp_path / "o.mp4")
    client.lipsync(video, audio, out, common_pb2.LipsyncOptions(codec=LOSSLESS))
    frames, _, _, _ = helpers.decode_video(out)
    source, _, _, _ = helpers.decode_video(video)
    assert len(frames) == 25
    # the marker in the corner (outside any mask) shows which source frame was used: 0..9, 9..0, 0..4
    order = [next(i for i, s in enumerate(source) if np.array_equal(f[:16, :16], s[:16, :16])) for f in frames]
    assert order == list(range(10)) + list(range(9, -1, -1)) + list(range(5))


@pytest.mark.parametrize("codec, fmt, ext, rate", [("aac", "ipod", "m4a", 44100), ("libmp3lame", "mp3", "mp3", 22050),
                                                   ("pcm_s16le", "wav", "wav", 8000)])
def test_common_audio_formats_and_rates(client, tmp_path, codec, fmt, ext, rate, assert_healthy):
    face = helpers.write_png(str(tmp_path / "face.png"), helpers.face_image())
    x = helpers.speech_like([(0.5, False), (1.5, True)], sr=rate)
    audio = helpers.write_wav(str(tmp_path / "a.wav"), x, rate) if codec == "pcm_s16le" else \
        helpers.encode_audio(str(tmp_path / f"a.{ext}"), x, rate, codec, fmt)
    out = str(tmp_path / "o.mp4")
    s = client.lipsync(face, audio, out)
    frames, fps, has_audio, audio_s = helpers.decode_video(out)
    assert abs(s.frames - 50) <= 2 and len(frames) == s.frames and has_audio and abs(audio_s - 2.0) < 0.2


@pytest.mark.parametrize("codec, ext, pix_fmt, fps", [
    ("libx265", "mp4", "yuv420p", 29.97), ("libvpx-vp9", "webm", "yuv420p", 30),
    ("prores_ks", "mov", "yuv422p10le", 24), ("libx264", "mkv", "yuv420p", 50),
    ("gif", "gif", "rgb8", 10)])        # an animated GIF is a video: its own frames at its own rate
def test_other_codecs_containers_and_frame_rates(client, tmp_path, codec, ext, pix_fmt, fps, assert_healthy):
    video = helpers.face_video(str(tmp_path / f"v.{ext}"), n=12, fps=fps, codec=codec, pix_fmt=pix_fmt)
    audio = helpers.write_wav(str(tmp_path / "a.wav"), helpers.speech_like([(1.0, True)]))
    out = str(tmp_path / "o.mp4")
    s = client.lipsync(video, audio, out)
    frames, out_fps, has_audio, _ = helpers.decode_video(out)
    # the output keeps the source's frame rate when none is asked for, and follows the audio's length
    assert abs(out_fps - fps) < 0.01 and s.frames == len(frames) == int(np.floor(1.0 * s.fps + 1e-9))
    assert has_audio and s.frames_without_face == 0


def test_odd_frame_size(client, tmp_path, assert_healthy):
    video = helpers.face_video(str(tmp_path / "v.mkv"), n=6, size=(641, 481), codec="ffv1", pix_fmt="bgr0")
    audio = helpers.write_wav(str(tmp_path / "a.wav"), helpers.speech_like([(0.5, True)]))
    s = client.lipsync(video, audio, str(tmp_path / "o.mp4"))
    frames, _, _, _ = helpers.decode_video(str(tmp_path / "o.mp4"))
    # H.264 4:2:0 needs even sizes: the last column and row are repeated
    assert frames[0].shape == (482, 642, 3) and (s.width, s.height) == (642, 482)


def test_rotated_phone_video_comes_out_upright(client, tmp_path, assert_healthy):
    import cv2
    upright = np.full((640, 360, 3), 90, np.uint8)
    upright[170:470, 30:330] = cv2.resize(helpers.face_image(), (300, 300), interpolation=cv2.INTER_AREA)
    stored = np.ascontiguousarray(np.rot90(upright, -1))          # landscape frames + a 90 degree display matrix
    video = helpers.write_video(str(tmp_path / "phone.mp4"), [stored] * 8, fps=30, rotation=90)
    audio = helpers.write_wav(str(tmp_path / "a.wav"), helpers.speech_like([(0.5, True)]))
    s = client.lipsync(video, audio, str(tmp_path / "o.mp4"))
    frames, fps, _, _ = helpers.decode_video(str(tmp_path / "o.mp4"))
    assert (s.width, s.height) == (360, 640) and frames[0].shape == (640, 360, 3) and abs(fps - 30) < 0.01
    assert s.frames_without_face == 0
    # above the mouth region the output is the upright source
    assert np.abs(frames[0][:250].astype(int) - upright[:250]).mean() < 4


def test_visemes_close_the_lips_on_m_b_p_in_the_output_video(shared_file, stack, client, tmp_path, assert_healthy):
    """Landmarks re-detected on the final MP4: each aligned m/b/p has a closed mouth within 40 ms of its time."""
    from lipsync_common.formats.media import decode_audio
    from services.generator.engines.warp import speech as sp
    a, _ = decode_audio(shared_file("eng.wav"), 60, 16000, mono=True)
    audio = np.ascontiguousarray(a[0][16000 * 2:16000 * 12])
    wav = helpers.write_wav(str(tmp_path / "speech.wav"), audio)
    face = helpers.write_png(str(tmp_path / "face.png"), helpers.face_image())
    out = str(tmp_path / "out.mp4")
    s = client.lipsync(face, wav, out, common_pb2.LipsyncOptions(engine="visemes", codec=LOSSLESS))
    assert s.engine == "visemes" and "pocketsphinx alignment" in s.engine_detail
    frames, fps, _, _ = helpers.decode_video(out)
    gaps = lip_gaps(frames)
    shut = np.nanmedian(gaps[:12]) + 1.5           # the clip starts with 0.6 s of silence: the mouth at rest
    phones = sp.Speech().transcribe(audio).phones   # the same models and audio: the same phone times
    t = (np.arange(len(frames)) + 0.5) / fps
    closures = [p for p in phones if p.shape == "closed" and p.aligned]
    assert len(closures) >= 4
    for p in closures:
        near = (t >= p.start - 0.04) & (t < p.end + 0.04)
        assert np.nanmin(gaps[near]) <= shut, (p, gaps[near], shut)
    assert np.nanmax(gaps) > 2 * shut              # and it does open
