"""A live session's clock: which frame shows which audio, when each frame is fed to the generator and when it
goes to render. No gRPC here: the edge (server.py, live_edge.py) wires the calls to these methods.

Frame k covers samples [round(k * rate / fps), round((k + 1) * rate / fps)) of the session's audio track. At feed
time F(k) = T0 + k / fps the frame takes that much queued speech, or silence when none is queued (an idle frame:
the engine closes the mouth). Its crop can come once `lookahead` more frames were fed; it goes to render at
S(k) = F(k) + (lookahead + margin) / fps, with its crop, or without (the source frame as it is) when the crop is
late or the speech was interrupted. So frames leave at the output rate whatever the generator does, and the
audio each frame carries (`pcm`) is exactly what it shows: picture and sound cannot drift apart.
"""
from __future__ import annotations

import collections
import math
from dataclasses import dataclass, field

import numpy as np

ENGINE_RATE = 16000


def grid_start(mono: float, wall: float, fps: float, fed: int, lead: float = 0.0) -> float:
    """T0 on the shared frame grid: the monotonic time such that frame `fed` is fed at the first tick of the
    wall clock's grid of period 1 / fps that is at least `lead` from now (mono and wall read at the same moment).
    Every session at one fps then feeds its frames at the same instants, on this gateway and on any other whose
    clock is synchronised: the generator gets one frame of each session at once, and one whisper pass and one
    batch serve them all, instead of a small, padded batch every few milliseconds."""
    assert fps > 0 and lead >= 0
    tick = math.ceil((wall + lead) * fps) / fps          # the next grid instant, wall clock
    return mono + (tick - wall) - fed / fps


@dataclass
class FrameInfo:
    index: int
    speech: bool
    pcm: bytes                 # int16 mono at the input rate: what this frame shows (silence when idle)
    audio_s: float             # where its speech starts in the client's audio; -1 when idle
    arrival: float             # when the last sample it shows arrived (speech frames)
    interrupted: bool = False


@dataclass
class Stats:
    frames: int = 0
    speech: int = 0
    idle: int = 0
    late: int = 0
    latencies: list = field(default_factory=list)


class LiveClock:
    def __init__(self, fps: float, rate: int, lookahead: int, margin_frames: int, max_buffer_s: float,
                 resampler=None):
        assert fps > 0 and rate > 0 and lookahead >= 0 and margin_frames >= 1
        self.fps, self.rate, self.lookahead, self.margin = fps, rate, lookahead, margin_frames
        self.max_buffer = int(max_buffer_s * rate)
        self.resampler = resampler           # input rate -> 16 kHz, streaming (None when the input is 16 kHz)
        self.speech = np.zeros(0, np.int16)  # queued input samples
        self.speech16 = np.zeros(0, np.float32)
        self.taken = 0                       # input samples taken into frames so far
        self.taken16 = 0
        self.arrivals: collections.deque = collections.deque()   # (input sample end, arrival time)
        self.received = 0
        self.odd_byte = b""                  # the first byte of a sample whose second byte comes in the next message
        self.flushing = False                # the client said the utterance ended: pad its last frame
        self.fed = 0                         # frames fed
        self.frames: dict[int, FrameInfo] = {}
        self.stats = Stats()

    # ---- input

    def add_audio(self, pcm: bytes, now: float) -> None:
        """Queue speech (any number of bytes: a sample split between two messages is joined); BufferError when
        more than max_buffer_s is queued ahead of real time."""
        pcm = self.odd_byte + pcm
        whole = len(pcm) - len(pcm) % 2
        samples = np.frombuffer(pcm, "<i2", count=whole // 2)
        if len(self.speech) + len(samples) > self.max_buffer:
            raise BufferError(f"more than {self.max_buffer / self.rate:.1f} s of audio queued ahead of real time")
        self.odd_byte = pcm[whole:]
        self.speech = np.concatenate([self.speech, samples])
        self.received += len(samples)
        self.arrivals.append((self.received, now))
        as_float = samples.astype(np.float32) / 32768.0
        self.speech16 = np.concatenate([self.speech16, as_float if self.resampler is None
                                        else self.resampler.resample_chunk(as_float)])
        self.flushing = False

    def flush(self) -> None:
        self.flushing = True

    def interrupt(self) -> None:
        """Drop the queued speech; frames fed but not yet sent show the source frame instead of their crop, with
        silence."""
        self.taken += len(self.speech)
        self.taken16 = self._pos16(self.taken)
        self.odd_byte = b""
        self.speech, self.speech16 = self.speech[:0], self.speech16[:0]
        self.flushing = False
        for info in self.frames.values():     # fed, not sent yet: they show (and sound) idle
            if info.speech:
                info.interrupted, info.speech, info.audio_s = True, False, -1.0
                info.pcm = bytes(len(info.pcm))

    def buffered_ms(self) -> float:
        return 1000 * len(self.speech) / self.rate

    def has_speech(self) -> bool:
        return len(self.speech) > 0

    # ---- the clock

    def _bounds(self, k: int) -> int:
        return round(k * self.rate / self.fps)

    def _pos16(self, taken: int) -> int:
        return round(taken * ENGINE_RATE / self.rate)

    def next_frame(self) -> tuple[int, np.ndarray]:
        """Frame `fed`'s 16 kHz audio for the generator: queued speech when a whole frame of it is there (or the
        rest of an utterance the client flushed), else silence. Records what the frame shows."""
        k = self.fed
        n = self._bounds(k + 1) - self._bounds(k)
        if len(self.speech) >= n or (self.flushing and len(self.speech) > 0):
            part = self.speech[:n]
            pcm = np.concatenate([part, np.zeros(n - len(part), np.int16)])
            start = self.taken
            self.taken += len(part)
            n16 = self._pos16(self.taken) - self.taken16
            if len(part) < n:                                   # padded to a whole frame: silence after
                n16 = self._pos16(self.taken + n - len(part)) - self._pos16(self.taken) + n16
            audio16 = np.concatenate([self.speech16[:n16], np.zeros(max(0, n16 - len(self.speech16)), np.float32)])
            self.speech16 = self.speech16[n16:]
            self.taken16 = self._pos16(self.taken)
            self.speech = self.speech[len(part):]
            while len(self.arrivals) > 1 and self.arrivals[0][0] < self.taken:
                self.arrivals.popleft()
            arrival = self.arrivals[0][1] if self.arrivals else 0.0
            info = FrameInfo(k, True, pcm.tobytes(), start / self.rate, arrival)
        else:
            n16 = self._pos16(self._bounds(k + 1)) - self._pos16(self._bounds(k))
            audio16 = np.zeros(n16, np.float32)
            info = FrameInfo(k, False, bytes(2 * n), -1.0, 0.0)
        self.frames[k] = info
        self.fed += 1
        return k, audio16

    def feed_time(self, t0: float, k: int) -> float:
        return t0 + k / self.fps

    def send_time(self, t0: float, k: int) -> float:
        return t0 + (k + self.lookahead + self.margin) / self.fps

    def sent(self, k: int, on_time: bool, now: float) -> FrameInfo:
        """Frame k leaves (its crop was there in time, or not): its record, counted in the stats."""
        info = self.frames.pop(k)
        s = self.stats
        s.frames += 1
        if info.speech:
            s.speech += 1
            s.latencies = (s.latencies + [1000 * (now - info.arrival)])[-3000:]
        else:
            s.idle += 1
        if not on_time and not info.interrupted:
            s.late += 1
        return info

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.stats.latencies, q)) if self.stats.latencies else 0.0
