"""The live clock alone (no servers): a 10-minute session run faster than real time keeps picture and sound
together sample for sample, at frame rates that do not divide the sample rate."""
import numpy as np
import pytest
import soxr

from gateway.live import LiveClock, grid_start


@pytest.mark.parametrize("fps, rate", [(25.0, 16000), (30000 / 1001, 44100), (30.0, 48000)])
def test_ten_minute_session_has_no_drift(fps, rate):
    rng = np.random.default_rng(7)
    resampler = None if rate == 16000 else soxr.ResampleStream(rate, 16000, 1, "float32")
    clock = LiveClock(fps, rate, lookahead=2, margin_frames=2, max_buffer_s=10, resampler=resampler)
    sent, shown, engine_samples = [], [], 0
    frames = int(600 * fps)
    while clock.fed < frames:
        if rng.random() < 0.7:                          # speech arrives in uneven chunks, with gaps between
            chunk = rng.integers(-3000, 3000, int(rng.integers(1, 3)) * rate // 50).astype("<i2")
            if clock.buffered_ms() < 2000:
                clock.add_audio(chunk.tobytes(), now=0.0)
                sent.append(chunk)
        if rng.random() < 0.01:
            clock.flush()
        k, audio16 = clock.next_frame()
        info = clock.sent(k, True, now=0.0)
        engine_samples += len(audio16)
        shown.append(info)
    pcm = b"".join(i.pcm for i in shown)
    # the audio track is exactly frames x rate / fps samples long: no drift at all after 10 minutes
    assert len(pcm) // 2 == round(frames * rate / fps)
    # and the generator got the same span at 16 kHz (within a millisecond: rounding where speech and idle meet)
    assert abs(engine_samples - round(frames * 16000 / fps)) <= 16
    # speech frames show the samples sent, in order, each once (a frame cut short by a flush ends in silence)
    sent_bytes = np.concatenate(sent).tobytes()
    taken = [i for i in shown if i.speech]
    assert len(taken) > frames // 3
    starts = [round(i.audio_s * rate) for i in taken]
    assert starts == sorted(starts) and starts[0] == 0
    for i, nxt in zip(taken[:300], taken[1:301]):
        start, end = round(i.audio_s * rate), round(nxt.audio_s * rate)
        assert i.pcm == sent_bytes[2 * start:2 * end].ljust(len(i.pcm), b"\0")


def test_buffer_limit_and_interrupt():
    clock = LiveClock(25.0, 16000, lookahead=2, margin_frames=2, max_buffer_s=1.0)
    clock.add_audio(b"\1\0" * 12000, now=1.0)
    with pytest.raises(BufferError):
        clock.add_audio(b"\1\0" * 8000, now=1.0)
    k, _ = clock.next_frame()
    assert clock.frames[k].speech
    clock.interrupt()
    assert clock.buffered_ms() == 0 and not clock.frames[k].speech and clock.frames[k].pcm == bytes(1280)
    assert not clock.frames[clock.next_frame()[0]].speech


def test_a_sample_split_between_messages_is_joined():
    """The PCM is a byte stream: any chunk size, odd ones included (a client reading a socket or a pipe)."""
    clock = LiveClock(25.0, 16000, lookahead=2, margin_frames=2, max_buffer_s=1.0)
    pcm = np.arange(-320, 320, dtype="<i2").tobytes()          # one frame: 640 samples
    for at in range(0, len(pcm), 7):
        clock.add_audio(pcm[at:at + 7], now=1.0)
    assert clock.received == 640 and clock.odd_byte == b""
    k, _ = clock.next_frame()
    assert clock.frames[k].pcm == pcm


@pytest.mark.parametrize("fps", [25.0, 30000 / 1001])
def test_sessions_started_apart_feed_on_one_grid(fps):
    rng = np.random.default_rng(3)
    offset = 12345.678                         # the monotonic clock's origin differs from the wall clock's
    feeds = []
    for _ in range(20):
        wall = 1.8e9 + float(rng.uniform(0, 100))
        fed = int(rng.integers(0, 500))        # a session restarting after idle: frames already fed
        t0 = grid_start(wall - offset, wall, fps, fed, lead=0.02)
        first = t0 + fed / fps                 # when frame `fed` is fed (monotonic)
        # soon, never before the lead, within one frame period of it
        assert wall - offset + 0.02 - 1e-6 <= first < wall - offset + 0.02 + 1 / fps + 1e-6
        feeds.append(first + offset)
    # every session's feed instants lie on the same grid: whole periods apart
    periods = (np.array(feeds) - feeds[0]) * fps
    assert np.allclose(periods, np.round(periods), atol=1e-4)
