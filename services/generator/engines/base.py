"""The engine interface: load once, generate many, close.

An engine turns a prepared source (crops, landmarks, masks from the shared cache) and an audio track into one
256x256 RGB crop per output frame, yielded in frame order in batches. Every engine has the same methods with the
same signatures, so the server treats them alike:

- `versions`: the model versions it runs (loaded); None for an engine without model versions, which accepts any
  requested version and ignores it;
- `check(version)`: raises EngineUnavailable (the message says what to do) when it cannot run that version here;
- `generate(..., version=, priority=)` returns a Generation: the batches, and afterwards a line on how they were
  made (`detail()`);
- `close()`: stops its threads; called when the server stops.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Collection, Iterable, Iterator, Protocol

import numpy as np

from lipsync_common.formats.source_cache import SourceEntry

SAMPLE_RATE = 16000                              # the audio every engine takes: mono float32 PCM at 16 kHz
INTERACTIVE, BATCH = "interactive", "batch"      # request priorities (scheduling on a shared accelerator)
LIVE = "live"                                    # live sessions' frames: ahead of everything else


class EngineUnavailable(RuntimeError):
    """The engine cannot run here (e.g. its weight files are missing); the message says what to do."""


@dataclass
class Generation:
    """One request's output: `batches` yields uint8 [B, 256, 256, 3] crops for output frames 0, 1, ... in order;
    `detail()` says how they were made (read it once the batches are exhausted; "" when there is nothing to say).
    Nothing heavy runs before the first batch is asked for."""
    batches: Iterator[np.ndarray]
    detail: Callable[[], str] = field(default=lambda: "")


class Engine(Protocol):
    name: str
    description: str
    versions: Collection[str] | None

    def available(self) -> tuple[bool, str]:
        """(True, "") when it can run, else (False, why)."""

    def check(self, version: str) -> None:
        """Raises EngineUnavailable when it cannot run `version` here."""

    def load(self) -> None:
        """Load weights and warm up. Raises EngineUnavailable."""

    def generate(self, source: SourceEntry, audio: np.ndarray, sample_rate: int, fps: float, batch_size: int, *,
                 version: str, priority: str = INTERACTIVE) -> Generation:
        """The crops of every output frame (see Generation). Raises EngineUnavailable."""

    def open_live(self, source: SourceEntry, fps: float, on_crop: Callable[[np.ndarray | BaseException], None], *,
                  version: str) -> "LiveStream":
        """A live session's stream: audio frame by frame in, crops out through on_crop (in frame order, from any
        thread; an exception ends the stream). Raises EngineUnavailable."""

    def close(self) -> None:
        """Stop its threads and release what it holds; it generates nothing afterwards."""


class LiveStream(Protocol):
    lookahead: int      # frames of audio past a frame that its crop needs
    detail: str         # how the session is driven, in words
    quick_feed: bool    # feed/flush only queue work (the caller's event loop may call them); else a worker thread

    def feed(self, samples: np.ndarray) -> None:
        """The next output frame's audio (16 kHz mono float32); its crop comes once `lookahead` more frames came."""

    def flush(self) -> None:
        """Crops for every frame fed, the lookahead filled with silence."""

    def close(self) -> None:
        """No more crops; frees what the session holds (its queued frames on a shared accelerator)."""


def batched(crops: Iterable[np.ndarray], batch_size: int, cut_at: int = 0) -> Iterator[np.ndarray]:
    """Group per-frame crops into [B, 256, 256, 3] arrays of batch_size (the last one may be shorter). cut_at > 0:
    a group also ends once that many crops came in all (a request's head leaves without waiting for more)."""
    batch: list[np.ndarray] = []
    for n, crop in enumerate(crops, 1):
        batch.append(crop)
        if len(batch) == batch_size or n == cut_at:
            yield np.stack(batch)
            batch = []
    if batch:
        yield np.stack(batch)
