"""Renderer: parallel compositing gives the same file as serial, frames in order, and a bounded mask cache;
the source frames it pastes into are the source's own, walked forward and backward."""
import os

import numpy as np
import pytest

from lipsync_common.formats import media
from lipsync_common.formats.source_cache import source_frame
from lipsync_common import cores as lipsync_cores
from services.render.render import (Renderer, RenderError, composite, decoder_threads, default_threads, encoder_threads,
                                   frame_mask)
from tests import helpers


@pytest.fixture(scope="module")
def entry(tmp_path_factory):
    return helpers.prepared_entry(str(tmp_path_factory.mktemp("render")), n=12)


def render(entry, crops, threads, batch=5, fps=25.0, **kw):
    out = []
    r = Renderer(entry, fps, len(crops), out.append, threads=threads, **kw)
    for i in range(0, len(crops), batch):
        r.add(i, crops[i:i + batch])
    r.finish()
    assert r.reader_closed                                              # its frame reader is closed
    return b"".join(out)


def test_threads_give_the_same_file(entry):
    rng = np.random.default_rng(1)
    crops = rng.integers(0, 255, (30, 256, 256, 3), dtype=np.uint8)   # 30 output frames over 12 source frames
    serial = render(entry, crops, threads=0)
    parallel = render(entry, crops, threads=3)
    assert len(serial) > 1000 and parallel == serial
    assert render(entry, crops[::-1].copy(), threads=3) != serial       # the crops do matter


def usable(monkeypatch, tmp_path, cores: int, quota: str | None = None) -> None:
    """This process may run on `cores` cores, under a cgroup CPU quota (v2 cpu.max) or none."""
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cores)), raising=False)
    if quota:
        (tmp_path / "cpu.max").write_text(quota)
    monkeypatch.setattr(lipsync_cores, "CGROUP_ROOT", str(tmp_path))


@pytest.mark.parametrize("cores, setting, threads", [(2, 0, 3), (4, 0, 6), (16, 0, 12), (64, 0, 12), (16, 24, 24),
                                                     (2, 1, 1)])
def test_x264_gets_one_and_a_half_threads_per_core_up_to_12_unless_set(entry, monkeypatch, tmp_path, cores, setting,
                                                                       threads):
    usable(monkeypatch, tmp_path, cores)
    assert encoder_threads(setting) == threads
    r = Renderer(entry, 25.0, 2, lambda b: None, threads=0, x264_threads=setting)
    assert r.writer.video.codec_context.thread_count == threads        # what the encoder was opened with
    r.add(0, np.zeros((2, 256, 256, 3), np.uint8))
    r.finish()


@pytest.mark.parametrize("cores, setting, threads", [(2, -1, 1), (4, -1, 1), (8, -1, 2), (16, -1, 2), (16, 1, 1),
                                                     (16, 0, 0), (2, 3, 3)])
def test_the_source_decodes_with_two_threads_on_8_cores_or_more_unless_set(entry, monkeypatch, tmp_path, cores,
                                                                           setting, threads):
    usable(monkeypatch, tmp_path, cores)
    assert decoder_threads(setting) == threads
    r = Renderer(entry, 25.0, 2, lambda b: None, threads=0, decode_threads=setting)
    assert r._decode_threads == threads                                 # what its frame reader opens with
    r.add(0, np.zeros((2, 256, 256, 3), np.uint8))
    r.finish()


@pytest.mark.parametrize("cores, renders, threads", [(16, 1, (12, 2)), (16, 2, (12, 2)), (16, 3, (8, 1)),
                                                     (16, 8, (6, 1)), (8, 1, (12, 2)), (8, 2, (6, 1)), (2, 1, (3, 1)),
                                                     (2, 4, (3, 1)), (64, 8, (12, 2)), (64, 16, (6, 1))])
def test_renders_at_once_share_the_cores(monkeypatch, tmp_path, cores, renders, threads):
    """x264 gets its share of 1.5 threads per core (at least 6, at most 12 or what one render alone would get); a
    render decodes with 2 threads only while it has 8 cores of its own."""
    usable(monkeypatch, tmp_path, cores)
    assert (encoder_threads(0, renders), decoder_threads(-1, renders)) == threads
    assert (encoder_threads(4, renders), decoder_threads(3, renders)) == (4, 3)      # set: as set


def test_a_pods_cpu_limit_not_its_nodes_cores_sizes_the_threads(monkeypatch, tmp_path):
    """A render pod limited to 4 cores on a 64-core node: threads for 4 cores (x264 6, no compositing pool, one
    decoder thread), not for 64 (x264 12, 4 compositing threads, 2 decoder threads)."""
    usable(monkeypatch, tmp_path, 64)
    assert (encoder_threads(0), default_threads(), decoder_threads(-1)) == (12, 4, 2)
    usable(monkeypatch, tmp_path, 64, quota="400000 100000")
    assert (encoder_threads(0), default_threads(), decoder_threads(-1)) == (6, 0, 1)


def test_the_first_message_of_crops_gives_the_first_fragment_at_once(entry):
    """With compositing threads the renderer leaves frames compositing across messages, but not before the first
    fragment is out: the first 8 crops give the header and a 5-frame fragment before any more crops come."""
    out = []
    r = Renderer(entry, 25.0, 40, out.append, threads=2, first_fragment_s=0.2)
    r.add(0, np.full((8, 256, 256, 3), 128, np.uint8))
    assert b"moof" in b"".join(out)
    for first in range(8, 40, 8):
        r.add(first, np.full((8, 256, 256, 3), 128, np.uint8))
    r.finish()


def test_a_render_with_a_last_fragment_has_every_frame_and_a_keyframe_where_it_begins(entry, tmp_path):
    """LAST_FRAGMENT_S=0.2 at 25 fps: the last 5 frames are the last fragment's, from a keyframe; the file is whole."""
    import av

    out = []
    r = Renderer(entry, 25.0, 40, out.append, threads=2, first_fragment_s=0.2, last_fragment_s=0.2)
    for first in range(0, 40, 8):
        r.add(first, np.full((8, 256, 256, 3), 128, np.uint8))
    assert r.writer.tail is not None
    r.finish()
    path = tmp_path / "o.mp4"
    path.write_bytes(b"".join(out))
    with av.open(str(path)) as c:
        keys = [k for k, p in enumerate(p for p in c.demux(video=0) if p.pts is not None) if p.is_keyframe]
    with av.open(str(path)) as c:
        assert sum(1 for _ in c.decode(video=0)) == 40
    assert keys == [0, 5, 6, 31, 35] and r.writer.tail_at == 35


def test_the_source_is_read_ahead_from_the_start_with_every_setting_in_place(entry, monkeypatch):
    """The renderer starts decoding its source when it is made (the generator is still making the first crops), in
    a thread that may run before the constructor returns: here the reading happens at once, inside the constructor,
    and the first frames are already decoded (as the decoder's I420 planes) when the crops come."""
    from lipsync_common.formats import frame_reader

    read = []

    def eager(items, depth=8):
        read.extend(next(items) for _ in range(3))
        return (item for item in read + list(items))      # a generator: the renderer closes it
    monkeypatch.setattr(frame_reader, "prefetch", eager)
    r = Renderer(entry, 25.0, 12, lambda b: None, threads=0)
    assert len(read) == 3 and all(frame.ndim == 2 for frame, _ in read)
    r.add(0, np.full((12, 256, 256, 3), 128, np.uint8))
    r.finish()


def test_gops_encoded_at_once_give_every_frame_and_an_abort_stops_them(entry, tmp_path):
    import threading
    import time

    crops = np.random.default_rng(3).integers(0, 255, (70, 256, 256, 3), dtype=np.uint8)
    data = render(entry, crops, threads=2, batch=8, gop_encoders=2)
    path = tmp_path / "gops.mp4"
    path.write_bytes(data)
    decoded, fps, _, _ = helpers.decode_video(str(path))
    assert len(decoded) == 70 and fps == 25
    # a render stopped halfway: the GOP encoders' threads end, nothing is written after
    out = []
    r = Renderer(entry, 25.0, 70, out.append, threads=2, gop_encoders=2)
    for i in range(0, 40, 8):
        r.add(i, crops[i:i + 8])
    r.abort()
    deadline = time.monotonic() + 10
    while any(t.name.startswith("x264-gop") for t in threading.enumerate()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(t.name.startswith("x264-gop") for t in threading.enumerate())
    size = len(b"".join(out))
    time.sleep(0.2)
    assert len(b"".join(out)) == size


def test_out_of_order_and_too_many_crops(entry):
    r = Renderer(entry, 25.0, 3, lambda b: None, threads=2)
    crops = np.zeros((2, 256, 256, 3), np.uint8)
    with pytest.raises(RenderError, match="expected frame 0"):
        r.add(1, crops)
    r.add(0, crops)
    with pytest.raises(RenderError, match="more crops"):
        r.add(2, crops)
    r.abort()
    with pytest.raises(RenderError, match="stopped"):
        r.add(2, crops[:1])


@pytest.mark.parametrize("fps", [25.0, 40.0, 15.0])
def test_each_output_frame_is_its_source_frame_with_the_crop_pasted(entry, tmp_path, fps):
    """Lossless output: frame t is exactly composite(source frame, crop t, box, mask) of the source frame that
    source_frame picks (forward, backward, forward; repeated or skipped at another frame rate)."""
    video = os.path.join(os.path.dirname(os.path.dirname(entry.path)), "v.mp4")   # the fixture's source
    _, frames = media.read_face_media(video, 10**8, 1000)
    frames = list(frames)
    rng = np.random.default_rng(2)
    crops = rng.integers(0, 255, (40, 256, 256, 3), dtype=np.uint8)
    path = tmp_path / "o.mp4"
    path.write_bytes(render(entry, crops, threads=2, fps=fps, lossless_rgb=True))
    out, _, _, _ = helpers.decode_video(str(path))
    assert len(out) == 40
    for t in range(40):
        idx = source_frame(t, entry.meta.num_frames, entry.meta.fps, fps)
        (box, alpha) = frame_mask(entry, idx)
        assert np.array_equal(out[t], composite(frames[idx], crops[t], box, alpha)), t


def test_h264_output_keeps_the_source_samples_and_blends_in_ycbcr(entry, tmp_path):
    """H.264 output (crf 0: lossless in 4:2:0) of a yuv420p source: frame t is composite_i420 of the source frame's
    own I420 planes - every sample outside the mask is the decoder's, no RGB round trip - and it matches the RGB
    path's blend up to rounding."""
    import av
    import cv2

    from services.render.render import composite_i420

    video = os.path.join(os.path.dirname(os.path.dirname(entry.path)), "v.mp4")
    with av.open(video) as c:
        planes = [f.to_ndarray() for f in c.decode(video=0)]
    rng = np.random.default_rng(3)
    crops = rng.integers(0, 255, (30, 256, 256, 3), dtype=np.uint8)
    path = tmp_path / "o.mp4"
    path.write_bytes(render(entry, crops, threads=2, crf=0))
    with av.open(str(path)) as c:
        out = [f.to_ndarray() for f in c.decode(video=0)]
    assert len(out) == 30 and out[0].shape == planes[0].shape
    for t in range(30):
        idx = source_frame(t, entry.meta.num_frames, entry.meta.fps, 25.0)
        box, alpha = frame_mask(entry, idx)
        want = composite_i420(planes[idx], crops[t], box, alpha)
        assert np.array_equal(out[t], want), t
        rgb_path = cv2.cvtColor(composite(cv2.cvtColor(planes[idx], cv2.COLOR_YUV2RGB_I420), crops[t], box, alpha),
                                cv2.COLOR_RGB2YUV_I420)
        h = entry.meta.height
        x1, y1, x2, y2 = box     # luma in the box: rounding, and the RGB path's clipping of out-of-gamut samples
        assert np.abs(want[y1:y2, x1:x2].astype(int) - rgb_path[y1:y2, x1:x2].astype(int)).mean() < 0.5
        outside = np.ones((h, want.shape[1]), bool)
        outside[y1:y2, x1:x2] = alpha[:y2 - y1, :x2 - x1] == 0
        assert np.array_equal(want[:h][outside], planes[idx][:h][outside])     # the decoder's own luma


@pytest.mark.parametrize("seed", range(5))
def test_the_mask_extent_and_chroma_alpha_equal_numpys_plain_forms(seed):
    """The hot path's cheaper forms: the masked extent from the rows' and columns' any() (np.nonzero's bounds) and
    the 2x2 block mean in integers (numpy's float mean rounded half to even), on masks with ragged edges."""
    from services.render.render import _block_mean, _extent
    rng = np.random.default_rng(seed)
    alpha = (rng.random((97, 130)) > 0.7) * rng.integers(1, 256, (97, 130))
    alpha[:rng.integers(0, 40)] = 0
    alpha[:, rng.integers(60, 130):] = 0
    alpha = alpha.astype(np.uint8)
    ys, xs = np.nonzero(alpha)
    assert _extent(alpha) == (ys.min(), ys.max() + 1, xs.min(), xs.max() + 1)
    assert _extent(np.zeros((8, 8), np.uint8)) is None
    a = rng.integers(0, 256, (96, 130)).astype(np.uint16)
    a[:4, :4] = [[0, 1, 2, 3], [1, 0, 3, 2], [2, 2, 5, 5], [0, 0, 5, 5]]   # block sums 2 (-> 0) and 10 (-> 2)
    want = a.reshape(48, 2, 65, 2).mean((1, 3)).round().astype(np.uint16)
    assert (_block_mean(a) == want).all()
    assert _block_mean(a)[0, 0] == 0 and _block_mean(a)[0, 1] == 2
