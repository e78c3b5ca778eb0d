"""The prepared-source cache: complete entries only, corrupt entries rebuilt, LRU eviction under a size limit;
frames decoded again from the stored media equal the ones the writer was given, masks round-trip."""
import json
import os
import time

import numpy as np
import pytest

from lipsync_common.formats import media
from lipsync_common.formats.source_cache import FORMAT_VERSION, MEDIA, SourceCache, SourceMeta, SourceNotFound
from tests import helpers

H, W, N = 48, 64, 6


def masks(n=N):
    """Soft blobs, one frame without a face (all zero)."""
    yy, xx = np.mgrid[:256, :256]
    out = [np.clip(255 - ((yy - 150 - 5 * i) ** 2 + (xx - 128) ** 2) / 20, 0, 255).astype(np.uint8) for i in range(n)]
    out[1][:] = 0
    return out


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    rng = np.random.default_rng(0)
    frames = [np.clip(rng.normal(40 * i, 20, (H, W, 3)), 0, 255).astype(np.uint8) for i in range(N)]
    return helpers.write_video(str(tmp_path_factory.mktemp("media") / "v.mp4"), frames)


def put(cache: SourceCache, sid: str, video: str):
    w = cache.writer(sid, video)
    _, decoded = media.read_face_media(video, 10**8, 1000, timestamps=True)
    for i, ((frame, pts, key), mask) in enumerate(zip(decoded, masks())):
        mesh = np.full((468, 2), i, np.float32)
        crop = np.full((256, 256, 3), 10 + i, np.uint8)
        w.add(frame, pts, key, (0, 0, W, H) if i != 1 else (0, 0, 0, 0), crop, mask, mesh, i != 1)
    return w.commit(SourceMeta(sid, N, 25.0, W, H, False, N - 1, (-1, 1)))


def entry_bytes(tmp_path, video):
    return sum(f.stat().st_size for f in os.scandir(put(SourceCache(str(tmp_path / "probe")), "ff", video).path))


def test_roundtrip_and_no_half_written_entry(tmp_path, video):
    cache = SourceCache(str(tmp_path))
    w = cache.writer("aa", video)
    assert not cache.has("aa")                                   # still in its temporary folder
    w.abort()
    assert not cache.has("aa") and os.listdir(tmp_path) == []
    entry = put(cache, "aa", video)
    assert cache.has("aa") and not hasattr(entry, "frames")
    _, decoded = media.read_face_media(video, 10**8, 1000)
    with entry.frame_reader() as reader:
        for i, frame in enumerate(decoded):
            assert np.array_equal(reader.get(i), frame)
    for i, mask in enumerate(masks()):
        assert np.array_equal(entry.mask(i), mask)
        assert i == 1 or (entry.crop(i) == 10 + i).all()           # crops stored as they were given
        assert (entry.mesh[i] == i).all() and entry.has_face[i] == (i != 1)
    assert entry.crop(1).max() == 0                               # no face: zeros, as before
    with pytest.raises(SourceNotFound):
        cache.get("bb")
    # the media is the upload itself (a hard link on the same volume), not a re-encode
    assert open(os.path.join(entry.path, MEDIA), "rb").read() == open(video, "rb").read()


@pytest.mark.parametrize("damage", ["truncate media", "rewrite media", "truncate masks", "truncate crops", "meta",
                                    "boxes", "pts", "empty mesh", "old format"])
def test_a_corrupt_entry_is_ignored_and_can_be_rebuilt(tmp_path, video, damage):
    cache = SourceCache(str(tmp_path))
    path = put(cache, "aa", video).path
    media_path = os.path.join(path, MEDIA)
    if damage.endswith("media"):      # a new file in its place (not through the hard link: the video stays)
        data = bytearray(open(media_path, "rb").read())
        if damage == "truncate media":
            data = data[:len(data) // 2]
        else:                                                       # same size, other bytes
            data[-20:-10] = b"x" * 10
        os.remove(media_path)
        open(media_path, "wb").write(bytes(data))
    elif damage.startswith("truncate"):
        with open(os.path.join(path, {"masks": "masks.z", "crops": "crops.u8"}[damage.split()[1]]), "r+b") as f:
            f.truncate(10)
    elif damage == "meta":
        open(os.path.join(path, "meta.json"), "w").write("{not json")
    elif damage == "boxes":
        np.save(os.path.join(path, "boxes.npy"), np.zeros((1, 4), np.int32))
    elif damage == "pts":
        np.save(os.path.join(path, "pts.npy"), np.zeros(N + 1, np.int64))
    elif damage == "empty mesh":
        open(os.path.join(path, "mesh.npy"), "wb").close()
    else:                                                          # an entry of the raw-frames format
        meta = json.load(open(os.path.join(path, "meta.json")))
        meta["format_version"] = FORMAT_VERSION - 1
        json.dump(meta, open(os.path.join(path, "meta.json"), "w"))
    assert not cache.has("aa")
    assert not os.path.exists(path)                              # moved aside, so a rebuild can take its place
    put(cache, "aa", video)
    assert cache.has("aa") and cache.get("aa").mask(0).max() == 255


def test_an_entry_in_use_stays_readable_when_evicted(tmp_path, video):
    cache = SourceCache(str(tmp_path))
    entry = put(cache, "aa", video)
    reader = entry.frame_reader()
    first = reader.get(0).copy()
    cache._discard(entry.path)                                    # evicted by another replica meanwhile
    assert not cache.has("aa")
    _, decoded = media.read_face_media(video, 10**8, 1000)
    frames = list(decoded)
    assert np.array_equal(reader.get(N - 1), frames[-1]) and np.array_equal(reader.get(0), first)
    reader.close()
    with entry.frame_reader() as again:                           # the entry holds the media open too
        assert np.array_equal(again.get(3), frames[3])
    assert np.array_equal(entry.mask(2), masks()[2])


def test_lru_eviction_keeps_recently_used_entries(tmp_path, video):
    size = entry_bytes(tmp_path, video)
    cache = SourceCache(str(tmp_path / "c"), max_bytes=int(2.5 * size))
    put(cache, "aa", video)
    put(cache, "bb", video)
    old = time.time() - 100
    os.utime(cache.path("aa"), (old, old))
    os.utime(cache.path("bb"), (old + 10, old + 10))
    cache.get("aa")                                               # aa is now the most recently used
    put(cache, "cc", video)                                       # over the limit: bb goes
    assert cache.has("aa") and cache.has("cc") and not cache.has("bb")
    assert sum(s for _, s, _ in cache.entries()) <= 2.5 * size


def test_stale_temporary_folders_are_cleaned(tmp_path, video):
    cache = SourceCache(str(tmp_path))
    cache.writer("aa", video)                                     # a writer that crashed
    stale = [n for n in os.listdir(tmp_path) if n.startswith(".tmp-")][0]
    cache.clean_stale_temp(older_than_s=3600)
    assert stale in os.listdir(tmp_path)                          # recent: may still be in progress
    old = time.time() - 7200
    os.utime(os.path.join(tmp_path, stale), (old, old))
    cache.clean_stale_temp(older_than_s=3600)
    assert os.listdir(tmp_path) == []
