"""The engine interface: load once, generate many, close.

An engine turns a prepared source (crops, landmarks, masks from the shared cache) and an audio track into one
256x256 RGB crop per output frame, yielded in frame order in batches.
"""
from __future__ import annotations

from typing import Iterable, Iterator, Protocol

import numpy as np

from lipsync_common.formats.source_cache import SourceEntry


class EngineUnavailable(RuntimeError):
    """The engine cannot run here (e.g. its weight files are missing); the message says what to do."""


class Engine(Protocol):
    name: str
    description: str

    def available(self) -> tuple[bool, str]:
        """(True, "") when it can run, else (False, why)."""

    def load(self) -> None:
        """Load weights and warm up. Raises EngineUnavailable."""

    def generate(self, source: SourceEntry, audio: np.ndarray, sample_rate: int, fps: float,
                 batch_size: int) -> Iterator[np.ndarray]:
        """Yield uint8 [B, 256, 256, 3] crops for output frames 0, 1, ... in order."""

    def close(self) -> None:
        ...


def batched(crops: Iterable[np.ndarray], batch_size: int) -> Iterator[np.ndarray]:
    """Group per-frame crops into [B, 256, 256, 3] arrays of batch_size (the last one may be shorter)."""
    batch: list[np.ndarray] = []
    for crop in crops:
        batch.append(crop)
        if len(batch) == batch_size:
            yield np.stack(batch)
            batch = []
    if batch:
        yield np.stack(batch)
