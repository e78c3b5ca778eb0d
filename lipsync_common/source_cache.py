"""The prepared-source cache that preprocess writes and generator/render read (a shared directory).

One folder per source id, written under a temporary name and renamed when complete, so a reader never sees
a half-written entry. An entry whose files do not match its meta.json (a crash mid-copy, a truncated volume) is
treated as absent and moved aside, so it is rebuilt. With `max_bytes` set, committing an entry evicts the least
recently used ones (use = `get`, recorded in the folder's mtime) until the cache fits:

    meta.json     sizes, fps, options, bbox_shift range
    frames.u8     raw RGB frames [N, H, W, 3]
    crops.u8      256x256 RGB crops [N, 256, 256, 3] (zeros where no face)
    masks.u8      blend masks [N, 256, 256] (0..255)
    boxes.npy     int32 [N, 4] crop boxes x1, y1, x2, y2 in frame pixels
    has_face.npy  bool [N]
    mesh.npy      float32 [N, 468, 2] Face Mesh points in crop coordinates (NaN where no face)
"""
from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from dataclasses import asdict, dataclass, field

import numpy as np

CROP = 256
FORMAT_VERSION = 1


class SourceNotFound(LookupError):
    pass


class CorruptEntry(ValueError):
    pass


@dataclass
class SourceMeta:
    source_id: str
    num_frames: int
    fps: float
    width: int
    height: int
    is_image: bool
    frames_with_face: int
    bbox_shift_range: tuple[int, int]
    options: dict = field(default_factory=dict)
    format_version: int = FORMAT_VERSION


class SourceEntry:
    """Read access to one prepared source; arrays are memory-mapped."""

    def __init__(self, path: str):
        with open(os.path.join(path, "meta.json")) as f:
            raw = json.load(f)
        raw["bbox_shift_range"] = tuple(raw["bbox_shift_range"])
        self.meta = SourceMeta(**raw)
        if self.meta.format_version != FORMAT_VERSION:
            raise CorruptEntry(f"format {self.meta.format_version}, expected {FORMAT_VERSION}")
        n, h, w = self.meta.num_frames, self.meta.height, self.meta.width
        for name, size in (("frames.u8", n * h * w * 3), ("crops.u8", n * CROP * CROP * 3),
                           ("masks.u8", n * CROP * CROP)):
            if os.path.getsize(os.path.join(path, name)) != size:
                raise CorruptEntry(f"{name} has the wrong size")
        self.path = path
        self.frames = np.memmap(os.path.join(path, "frames.u8"), np.uint8, "r", shape=(n, h, w, 3))
        self.crops = np.memmap(os.path.join(path, "crops.u8"), np.uint8, "r", shape=(n, CROP, CROP, 3))
        self.masks = np.memmap(os.path.join(path, "masks.u8"), np.uint8, "r", shape=(n, CROP, CROP))
        self.boxes = np.load(os.path.join(path, "boxes.npy"))
        self.has_face = np.load(os.path.join(path, "has_face.npy"))
        self.mesh = np.load(os.path.join(path, "mesh.npy"))
        if self.boxes.shape != (n, 4) or self.has_face.shape != (n,) or self.mesh.shape[0] != n:
            raise CorruptEntry("boxes/has_face/mesh do not match the frame count")


class EntryWriter:
    """Builds an entry in a temporary folder; `commit` renames it into place."""

    def __init__(self, cache: "SourceCache", source_id: str, width: int, height: int):
        self.cache = cache
        self.source_id = source_id
        self.width, self.height = width, height
        self.tmp = os.path.join(cache.root, f".tmp-{source_id}-{uuid.uuid4().hex[:8]}")
        os.makedirs(self.tmp)
        self._frames = open(os.path.join(self.tmp, "frames.u8"), "wb")
        self._crops = open(os.path.join(self.tmp, "crops.u8"), "wb")
        self._masks = open(os.path.join(self.tmp, "masks.u8"), "wb")
        self.boxes: list[tuple[int, int, int, int]] = []
        self.has_face: list[bool] = []
        self.mesh: list[np.ndarray] = []

    def add(self, frame: np.ndarray, box, crop: np.ndarray, mask: np.ndarray, mesh: np.ndarray, has_face: bool):
        self._frames.write(np.ascontiguousarray(frame, np.uint8).tobytes())
        self._crops.write(np.ascontiguousarray(crop, np.uint8).tobytes())
        self._masks.write(np.ascontiguousarray(mask, np.uint8).tobytes())
        self.boxes.append(tuple(box))
        self.has_face.append(bool(has_face))
        self.mesh.append(mesh.astype(np.float32))

    def commit(self, meta: SourceMeta) -> SourceEntry:
        for f in (self._frames, self._crops, self._masks):
            f.close()
        np.save(os.path.join(self.tmp, "boxes.npy"), np.array(self.boxes, np.int32).reshape(-1, 4))
        np.save(os.path.join(self.tmp, "has_face.npy"), np.array(self.has_face, bool))
        np.save(os.path.join(self.tmp, "mesh.npy"), np.stack(self.mesh) if self.mesh else np.zeros((0, 468, 2), np.float32))
        with open(os.path.join(self.tmp, "meta.json"), "w") as f:
            json.dump(asdict(meta), f)
        final = self.cache.path(self.source_id)
        try:
            os.rename(self.tmp, final)
        except OSError:  # another replica finished the same source first: keep theirs
            shutil.rmtree(self.tmp, ignore_errors=True)
        self.cache.evict(keep=self.source_id)
        return SourceEntry(final)

    def abort(self) -> None:
        for f in (self._frames, self._crops, self._masks):
            f.close()
        shutil.rmtree(self.tmp, ignore_errors=True)


class SourceCache:
    def __init__(self, root: str, max_bytes: int = 0):
        self.root = root
        self.max_bytes = max_bytes      # 0 = no limit
        os.makedirs(root, exist_ok=True)

    def path(self, source_id: str) -> str:
        if not source_id or not all(c in "0123456789abcdef" for c in source_id):
            raise SourceNotFound(f"invalid source id {source_id!r}")
        return os.path.join(self.root, source_id)

    def _open(self, source_id: str) -> SourceEntry | None:
        path = self.path(source_id)
        if not os.path.isfile(os.path.join(path, "meta.json")):
            return None
        try:
            entry = SourceEntry(path)
        except (OSError, ValueError, TypeError, KeyError) as e:   # unreadable or inconsistent: rebuild it
            self._discard(path, f"corrupt ({e})")
            return None
        try:
            os.utime(path)      # last use, for LRU eviction
        except OSError:
            pass
        return entry

    def get(self, source_id: str) -> SourceEntry:
        entry = self._open(source_id)
        if entry is None:
            raise SourceNotFound(f"source {source_id} is not in the cache at {self.root}; call Prepare first")
        return entry

    def has(self, source_id: str) -> bool:
        try:
            return self._open(source_id) is not None
        except SourceNotFound:
            return False

    def writer(self, source_id: str, width: int, height: int) -> EntryWriter:
        return EntryWriter(self, source_id, width, height)

    def _discard(self, path: str, why: str = "") -> None:
        """Move an entry aside first (atomic: readers stop seeing it at once), then delete it. Open memory maps
        of it stay valid until closed."""
        trash = os.path.join(self.root, f".trash-{uuid.uuid4().hex[:8]}")
        try:
            os.rename(path, trash)
        except OSError:
            return
        shutil.rmtree(trash, ignore_errors=True)

    def entries(self) -> list[tuple[float, int, str]]:
        """(last use, bytes, path) of every committed entry."""
        out = []
        for name in os.listdir(self.root):
            path = os.path.join(self.root, name)
            if name.startswith(".") or not os.path.isdir(path):
                continue
            try:
                size = sum(e.stat().st_size for e in os.scandir(path) if e.is_file())
                out.append((os.stat(path).st_mtime, size, path))
            except OSError:
                continue
        return out

    def evict(self, keep: str = "") -> list[str]:
        """Delete least recently used entries (never `keep`) until the cache fits max_bytes; returns their ids."""
        if self.max_bytes <= 0:
            return []
        entries = sorted(self.entries())
        total = sum(size for _, size, _ in entries)
        removed = []
        for _, size, path in entries:
            if total <= self.max_bytes:
                break
            if os.path.basename(path) == keep:
                continue
            self._discard(path, "evicted")
            total -= size
            removed.append(os.path.basename(path))
        return removed

    def clean_stale_temp(self, older_than_s: float = 24 * 3600) -> None:
        """Remove temporary folders left by a crashed writer."""
        now = time.time()
        for name in os.listdir(self.root):
            path = os.path.join(self.root, name)
            if name.startswith((".tmp-", ".trash-")):
                try:
                    if now - os.stat(path).st_mtime > older_than_s:
                        shutil.rmtree(path, ignore_errors=True)
                except OSError:
                    pass


def cycle_index(t: int, n: int) -> int:
    """Source frame for output frame t: forward, then backward, repeated (MuseTalk's frame cycle)."""
    k = t % (2 * n)
    return k if k < n else 2 * n - 1 - k


def source_frame(t: int, n: int, src_fps: float, out_fps: float) -> int:
    """Source frame shown at output frame t: the frame at the same time (so a frame-rate change keeps the
    head's speed), cycled forward then backward when the output is longer than the source."""
    k = t if src_fps <= 0 or out_fps <= 0 else int(np.floor(t * src_fps / out_fps + 1e-6))
    return cycle_index(k, n)
