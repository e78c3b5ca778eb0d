"""The prepared-source cache that preprocess writes and generator/render read (a shared directory).

One folder per source id, written under a temporary name and renamed when complete, so a reader never sees
a half-written entry. An entry whose files do not match its meta.json (a crash mid-copy, a truncated volume) is
treated as absent and moved aside, so it is rebuilt. With `max_bytes` set, committing an entry evicts the least
recently used ones (use = `get`, recorded in the folder's mtime) until the cache fits.

An entry costs about what its source holds: the uploaded media file itself, decoded again when frames are
needed (`SourceEntry.frame_reader`, the same decoding as prepare's, so the same pixels), plus a few kB per
frame, plus the face crops as they are (192 kB a frame): the engines read a crop for every output frame, and
recomputing it (decoding the whole frame, then a Lanczos resize: ~5 ms at 720p) cost the weight-free engines a
third of their speed; zlib would save a quarter to a third of the bytes for 1.2-1.5 ms a read and 4-6 ms a write
(tools/bench_cpu_paths.py). A 1080p frame costs ~240 kB all in.

    meta.json         sizes, fps, options, bbox_shift range; "storage": the media file's size and fingerprint
    source.media      the face media as uploaded, byte for byte (a hard link to the upload where possible)
    pts.npy           int64 [N] presentation time of each decoded frame, stream time base (frame_reader.NO_PTS: none)
    keyframe.npy      bool [N] the decoder marked the frame a keyframe (a seek point for the frame reader)
    check.npy         uint32 [N] media.frame_check of each RGB frame (catches a seek that decodes differently)
    masks.z           blend masks [256, 256] (0..255), zlib-compressed one by one (no bytes: all zero)
    mask_offsets.npy  int64 [N + 1] where frame i's mask starts and ends in masks.z
    crops.u8          raw face crops [N, 256, 256, 3] RGB, exactly prepare's crop_face (zeros: no face)
    boxes.npy         int32 [N, 4] crop boxes x1, y1, x2, y2 in frame pixels
    has_face.npy      bool [N]
    mesh.npy          float32 [N, 468, 2] Face Mesh points in crop coordinates (NaN where no face)

Data another room derives from a source (the musetalk engine's reference latents) has a place of its own, next to
the entries rather than inside them (an entry's folder is preprocess's, written once), made on demand by
`SourceEntry.derived_dir(kind)`, counted with its entry's bytes, and removed with it (evicted, found corrupt,
replaced by a new commit):

    <cache>/derived/<source_id>/<kind>/   e.g. derived/<id>/latents/latents-<key>.pt (the generator's)
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import uuid
from dataclasses import asdict, dataclass, field

import numpy as np

from lipsync_common.formats import frame_reader, media
from lipsync_common.formats.blobs import BlobError, Blobs, BlobWriter

CROP = 256
FORMAT_VERSION = 3
MEDIA = "source.media"
DERIVED = "derived"          # <cache>/derived/<source_id>/<kind>/: what other rooms derive from an entry


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


def _fingerprint(f, span: int = 1 << 16) -> str:
    """Size and SHA-256 of the first and last 64 kB of an open file: notices a media file truncated or
    rewritten in place (a hard link shares the upload's bytes) without reading all of it."""
    size = os.fstat(f.fileno()).st_size
    h = hashlib.sha256(str(size).encode())
    f.seek(0)
    h.update(f.read(span))
    if size > span:
        f.seek(max(span, size - span))
        h.update(f.read(span))
    return h.hexdigest()


class SourceEntry:
    """Read access to one prepared source. Frames: `frame_reader()` (decodes the stored media); crops: `crop`,
    `crops_at`; masks: `mask`; boxes, has_face and mesh are arrays in memory."""

    def __init__(self, path: str):
        with open(os.path.join(path, "meta.json")) as f:
            raw = json.load(f)
        if raw.get("format_version") != FORMAT_VERSION:
            raise CorruptEntry(f"format {raw.get('format_version')}, expected {FORMAT_VERSION}")
        storage = raw.pop("storage")
        raw["bbox_shift_range"] = tuple(raw["bbox_shift_range"])
        self.meta = SourceMeta(**raw)
        self.path = path
        n = self.meta.num_frames
        self.media_path = os.path.join(path, MEDIA)
        # the media and the masks are held open from here on: an entry evicted while in use stays readable
        self._media = open(self.media_path, "rb")
        if os.fstat(self._media.fileno()).st_size != storage["media_bytes"] or \
                _fingerprint(self._media) != storage["media_fingerprint"]:
            raise CorruptEntry(f"{MEDIA} is not the file the entry was made from")
        load = lambda name: np.load(os.path.join(path, name))  # noqa: E731
        self.boxes = load("boxes.npy")
        self.has_face = load("has_face.npy")
        self.mesh = load("mesh.npy")
        self.pts, self.keyframe, self.checks = load("pts.npy"), load("keyframe.npy"), load("check.npy")
        if self.boxes.shape != (n, 4) or self.has_face.shape != (n,) or self.mesh.shape[0] != n:
            raise CorruptEntry("boxes/has_face/mesh do not match the frame count")
        if self.pts.shape != (n,) or self.keyframe.shape != (n,) or self.checks.shape != (n,):
            raise CorruptEntry("pts/keyframe/check do not match the frame count")
        try:
            self._masks = Blobs(path, "masks.z", "mask_offsets.npy", n, (CROP, CROP))
        except BlobError as e:
            raise CorruptEntry(str(e)) from None
        if os.path.getsize(os.path.join(path, "crops.u8")) != n * CROP * CROP * 3:
            raise CorruptEntry("crops.u8 has the wrong size")
        self._crops = np.memmap(os.path.join(path, "crops.u8"), np.uint8, "r", shape=(n, CROP, CROP, 3))

    def frame_reader(self, **kw) -> frame_reader.FrameReader:
        """A reader of the source's frames (RGB uint8 [H, W, 3], read-only) by index, fast for rendering's walk
        forward then backward; one per thread of use, `close` it (or use it in a with block).
        kw: FrameReader's tuning (window, window_bytes, ...)."""
        m = self.meta
        return frame_reader.FrameReader(self.media_path, m.num_frames, self.pts, self.keyframe, self.checks,
                                 size=(m.width, m.height), fd=self._media.fileno(), **kw)

    def crops_at(self, indices) -> np.ndarray:
        """uint8 [k, 256, 256, 3]: the face crops prepare made of these frames (zeros without a face)."""
        return np.array(self._crops[np.asarray(indices, np.int64).reshape(-1)])

    def crop(self, idx: int) -> np.ndarray:
        """uint8 [256, 256, 3] crop of frame idx (zeros without a face)."""
        return np.array(self._crops[int(idx)])

    def mask(self, idx: int) -> np.ndarray:
        """uint8 [256, 256] blend mask of frame idx (all zero without a face)."""
        try:
            return self._masks[int(idx)]
        except BlobError as e:
            raise CorruptEntry(str(e)) from None

    def derived_dir(self, kind: str) -> str:
        """The folder for data of one `kind` (e.g. "latents") that another room derives from this source:
        <cache>/derived/<source_id>/<kind>/, created here. It is removed with the entry (evicted, found corrupt or
        replaced); write into it under a temporary name and rename, as other replicas may share the cache."""
        if not kind or not all(c.isalnum() or c in "-_" for c in kind):
            raise ValueError(f"invalid derived-data kind {kind!r}")
        root, source_id = os.path.split(self.path)
        path = os.path.join(root, DERIVED, source_id, kind)
        os.makedirs(path, exist_ok=True)
        return path


class EntryWriter:
    """Builds an entry in a temporary folder; `commit` renames it into place. media_path: the face media the
    frames are decoded from (linked or copied into the entry as it is)."""

    def __init__(self, cache: "SourceCache", source_id: str, media_path: str):
        self.cache = cache
        self.source_id = source_id
        self.tmp = os.path.join(cache.root, f".tmp-{source_id}-{uuid.uuid4().hex[:8]}")
        os.makedirs(self.tmp)
        try:
            dst = os.path.join(self.tmp, MEDIA)
            try:
                os.link(media_path, dst)       # the upload's bytes, not a second copy (same volume)
            except OSError:
                shutil.copyfile(media_path, dst)
            with open(dst, "rb") as f:
                self.media_bytes, self.media_fingerprint = os.fstat(f.fileno()).st_size, _fingerprint(f)
            self._masks = BlobWriter(os.path.join(self.tmp, "masks.z"), 6)
            self._crops = open(os.path.join(self.tmp, "crops.u8"), "wb")
        except BaseException:
            shutil.rmtree(self.tmp, ignore_errors=True)
            raise
        self.pts: list[int] = []
        self.keyframe: list[bool] = []
        self.checks: list[int] = []
        self.boxes: list[tuple[int, int, int, int]] = []
        self.has_face: list[bool] = []
        self.mesh: list[np.ndarray] = []

    def add(self, frame: np.ndarray, pts: int | None, keyframe: bool, box, crop: np.ndarray, mask: np.ndarray,
            mesh: np.ndarray, has_face: bool) -> None:
        """One decoded frame, in order: the frame itself is not kept, only its fingerprint (media.frame_check);
        pts/keyframe as read_face_media(timestamps=True) gave them."""
        mask = np.ascontiguousarray(mask, np.uint8)
        if mask.shape != (CROP, CROP):
            raise ValueError(f"mask shape {mask.shape}, expected {(CROP, CROP)}")
        crop = np.ascontiguousarray(crop, np.uint8)
        if crop.shape != (CROP, CROP, 3):
            raise ValueError(f"crop shape {crop.shape}, expected {(CROP, CROP, 3)}")
        self._masks.add(mask)
        self._crops.write((crop if has_face else np.zeros_like(crop)).tobytes())
        self.pts.append(frame_reader.NO_PTS if pts is None else int(pts))
        self.keyframe.append(bool(keyframe))
        self.checks.append(media.frame_check(frame))
        self.boxes.append(tuple(box))
        self.has_face.append(bool(has_face))
        self.mesh.append(mesh.astype(np.float32))

    def commit(self, meta: SourceMeta) -> SourceEntry:
        if meta.num_frames != len(self.boxes):
            raise ValueError(f"meta says {meta.num_frames} frames, {len(self.boxes)} were added")
        self._masks.file.close()
        self._crops.close()
        save = lambda name, a: np.save(os.path.join(self.tmp, name), a)  # noqa: E731
        save("mask_offsets.npy", np.array(self._masks.offsets, np.int64))
        save("pts.npy", np.array(self.pts, np.int64))
        save("keyframe.npy", np.array(self.keyframe, bool))
        save("check.npy", np.array(self.checks, np.uint32))
        save("boxes.npy", np.array(self.boxes, np.int32).reshape(-1, 4))
        save("has_face.npy", np.array(self.has_face, bool))
        save("mesh.npy", np.stack(self.mesh) if self.mesh else np.zeros((0, 468, 2), np.float32))
        with open(os.path.join(self.tmp, "meta.json"), "w") as f:
            json.dump({**asdict(meta), "storage": {"media_bytes": self.media_bytes,
                                                   "media_fingerprint": self.media_fingerprint}}, f)
        final = self.cache.path(self.source_id)
        try:
            os.rename(self.tmp, final)
        except OSError:  # another replica finished the same source first: keep theirs
            shutil.rmtree(self.tmp, ignore_errors=True)
        else:            # a new entry: whatever was derived from an earlier one of this id goes
            self.cache._discard_derived(self.source_id)
        self.cache.evict(keep=self.source_id)
        return SourceEntry(final)

    def abort(self) -> None:
        self._masks.file.close()
        self._crops.close()
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
        except (OSError, ValueError, TypeError, KeyError, EOFError) as e:   # unreadable or inconsistent: rebuild it
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

    def writer(self, source_id: str, media_path: str) -> EntryWriter:
        return EntryWriter(self, source_id, media_path)

    def _discard(self, path: str, why: str = "") -> None:
        """Move an entry aside first (atomic: readers stop seeing it at once), then delete it. Open frame
        readers and SourceEntry objects of it keep reading (they hold its files open)."""
        trash = os.path.join(self.root, f".trash-{uuid.uuid4().hex[:8]}")
        try:
            os.rename(path, trash)
        except OSError:
            return
        shutil.rmtree(trash, ignore_errors=True)
        self._discard_derived(os.path.basename(path))

    def _derived(self, source_id: str) -> str:
        return os.path.join(self.root, DERIVED, source_id)

    def _discard_derived(self, source_id: str) -> None:
        """Remove what other rooms derived from an entry (moved aside first, like the entry)."""
        path = self._derived(source_id)
        if not os.path.isdir(path):
            return
        trash = os.path.join(self.root, f".trash-{uuid.uuid4().hex[:8]}")
        try:
            os.rename(path, trash)
        except OSError:
            return
        shutil.rmtree(trash, ignore_errors=True)

    def entries(self) -> list[tuple[float, int, str]]:
        """(last use, bytes, path) of every committed entry; bytes include what was derived from it."""
        out = []
        for name in os.listdir(self.root):
            path = os.path.join(self.root, name)
            if name.startswith(".") or name == DERIVED or not os.path.isdir(path):
                continue
            try:
                size = sum(e.stat().st_size for e in os.scandir(path) if e.is_file())
                out.append((os.stat(path).st_mtime, size + _tree_bytes(self._derived(name)), path))
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
        """Remove temporary folders left by a crashed writer, and derived data whose entry is gone (written while
        the entry was being evicted)."""
        now = time.time()
        derived = os.path.join(self.root, DERIVED)
        for name in os.listdir(derived) if os.path.isdir(derived) else []:
            try:
                if not os.path.isdir(os.path.join(self.root, name)) and \
                        now - os.stat(os.path.join(derived, name)).st_mtime > older_than_s:
                    self._discard_derived(name)
            except OSError:
                pass
        for name in os.listdir(self.root):
            path = os.path.join(self.root, name)
            if name.startswith((".tmp-", ".trash-")):
                try:
                    if now - os.stat(path).st_mtime > older_than_s:
                        shutil.rmtree(path, ignore_errors=True)
                except OSError:
                    pass


def _tree_bytes(path: str) -> int:
    """Bytes of the files under a folder (0 when it does not exist)."""
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            try:
                total += os.path.getsize(os.path.join(root, f))
            except OSError:
                pass
    return total


def cycle_index(t: int, n: int) -> int:
    """Source frame for output frame t: forward, then backward, repeated (MuseTalk's frame cycle)."""
    k = t % (2 * n)
    return k if k < n else 2 * n - 1 - k


def source_frame(t: int, n: int, src_fps: float, out_fps: float) -> int:
    """Source frame shown at output frame t: the frame at the same time (so a frame-rate change keeps the
    head's speed), cycled forward then backward when the output is longer than the source."""
    k = t if src_fps <= 0 or out_fps <= 0 else int(np.floor(t * src_fps / out_fps + 1e-6))
    return cycle_index(k, n)
