"""LiveEncoder: one frame in, its encoded frame out; a close from another thread waits for a running encode."""
import io
import threading

import av
import numpy as np
import pytest

from services.render.live import LiveEncoder
from tests import helpers


@pytest.fixture(scope="module")
def entry(tmp_path_factory):
    return helpers.prepared_entry(str(tmp_path_factory.mktemp("live")), n=6)


def test_every_frame_comes_out_at_once_and_decodes(entry):
    enc = LiveEncoder(entry, 25.0)
    rng = np.random.default_rng(0)
    out = []
    for i in range(8):
        got = enc.encode(i, rng.integers(0, 255, (256, 256, 3), dtype=np.uint8) if i % 2 else None)
        assert [k for k, _, _ in got] == [i]            # zerolatency: no frame held back
        out += got
    with pytest.raises(ValueError, match="expected frame 8"):
        enc.encode(9, None)                             # frames come without gaps
    assert enc.close() == [] and out[0][2]             # nothing left inside; the first frame is a keyframe
    with av.open(io.BytesIO(b"".join(d for _, d, _ in out)), format="h264") as c:
        assert len(list(c.decode(video=0))) == 8


def test_a_close_from_another_thread_waits_for_the_running_encode(entry):
    """What a cancelled RenderLive call does: its encode still runs in a worker thread when the call's end closes
    the encoder (x264 flushed and the reader closed under a running encode aborted the process)."""
    enc = LiveEncoder(entry, 25.0, fmp4=True)
    inside, go = threading.Event(), threading.Event()
    frame = enc._frame

    def slow_frame(t, crop):
        inside.set()
        assert go.wait(10)
        return frame(t, crop)

    enc._frame = slow_frame
    results = {}
    encoding = threading.Thread(target=lambda: results.setdefault("encode", enc.encode(0, None)))
    encoding.start()
    assert inside.wait(10)
    closing = threading.Thread(target=lambda: results.setdefault("close", enc.close()))
    closing.start()
    closing.join(0.3)
    assert closing.is_alive()                           # close waits while the frame is being made
    go.set()
    encoding.join(10)
    closing.join(10)
    frames = results["encode"] + results["close"]      # fMP4: the fragment comes out at the flush
    assert [k for k, _, _ in frames] == [0] and enc.init_segment
    with pytest.raises(ValueError, match="closed"):
        enc.encode(1, None)
    assert enc.close() == []
