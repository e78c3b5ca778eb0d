"""How the render servicer sizes a renderer: with RENDER_THREADS_BY_LOAD, by the renders running on the box at once
(x264's share of the cores, 2 decoder threads only for a render with 8 cores of its own); without it, as one render
alone."""
import contextlib
import os

import pytest

from lipsync.v1 import common_pb2, render_pb2
from lipsync_common import cores
from services.render import active as active_module
from services.render.config import RenderConfig
from services.render.server import RenderServicer
from tests import helpers


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    folder = str(tmp_path_factory.mktemp("render-server"))
    return os.path.join(folder, "cache"), helpers.prepared_entry(folder, n=4).meta.source_id


@pytest.mark.parametrize("by_load, running, threads", [(False, 4, (12, 2)), (True, 1, (12, 2)), (True, 2, (12, 2)),
                                                       (True, 3, (8, 1)), (True, 8, (6, 1))])
def test_threads_by_the_renders_on_the_box(prepared, tmp_path, monkeypatch, by_load, running, threads):
    cache_dir, source_id = prepared
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(16)), raising=False)   # a 16-core box
    monkeypatch.setattr(cores, "CGROUP_ROOT", str(tmp_path))                                 # with no CPU quota
    monkeypatch.setattr(active_module, "default_folder", lambda: str(tmp_path / "renders"))
    servicer = RenderServicer(RenderConfig(cache_dir=cache_dir, threads_by_load=by_load))
    cfg = render_pb2.RenderConfig(source_id=source_id, fps=25, num_frames=2, audio_sample_rate=16000,
                                  audio_channels=1, codec=common_pb2.VIDEO_CODEC_H264)
    with contextlib.ExitStack() as held:
        for _ in range(running):       # this render and running - 1 others, as Render counts them
            held.enter_context(active_module.ActiveRenders(str(tmp_path / "renders")).running())
        r = servicer._renderer(servicer.cache.get(source_id), cfg, 23, lambda b: None)
        try:
            assert (r.writer.video.codec_context.thread_count, r._decode_threads) == threads
        finally:
            r.abort()


@pytest.mark.parametrize("first_s, last_s, tail_at", [(0.2, 0.2, 35), (0.2, 0.0, 0), (0.0, 0.4, 30), (0.0, 1.0, 0)])
def test_the_last_fragment_setting_reaches_the_writer(prepared, first_s, last_s, tail_at):
    """LAST_FRAGMENT_S: the renderer's writer starts its last fragment that long before the configured end (40
    frames), once the main encoder has had a GOP (from frame 6 with a first fragment, else from 0)."""
    cache_dir, source_id = prepared
    servicer = RenderServicer(RenderConfig(cache_dir=cache_dir, first_fragment_s=first_s, last_fragment_s=last_s))
    cfg = render_pb2.RenderConfig(source_id=source_id, fps=25, num_frames=40, audio_sample_rate=16000,
                                  audio_channels=1, codec=common_pb2.VIDEO_CODEC_H264)
    r = servicer._renderer(servicer.cache.get(source_id), cfg, 23, lambda b: None)
    try:
        assert r.writer.tail_at == tail_at
    finally:
        r.abort()
