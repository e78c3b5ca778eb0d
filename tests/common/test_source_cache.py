"""The prepared-source cache: complete entries only, corrupt entries rebuilt, LRU eviction under a size limit."""
import os
import time

import numpy as np
import pytest

from lipsync_common.source_cache import SourceCache, SourceMeta, SourceNotFound

H, W, N = 8, 10, 3


def put(cache: SourceCache, sid: str):
    w = cache.writer(sid, W, H)
    for i in range(N):
        w.add(np.full((H, W, 3), i, np.uint8), (0, 0, W, H), np.zeros((256, 256, 3), np.uint8),
              np.zeros((256, 256), np.uint8), np.zeros((468, 2), np.float32), True)
    return w.commit(SourceMeta(sid, N, 25.0, W, H, False, N, (-1, 1)))


def entry_bytes(tmp_path):
    return sum(f.stat().st_size for f in os.scandir(put(SourceCache(str(tmp_path / "probe")), "ff").path))


def test_roundtrip_and_no_half_written_entry(tmp_path):
    cache = SourceCache(str(tmp_path))
    w = cache.writer("aa", W, H)
    assert not cache.has("aa")                                   # still in its temporary folder
    w.abort()
    assert not cache.has("aa") and os.listdir(tmp_path) == []
    entry = put(cache, "aa")
    assert cache.has("aa") and entry.frames.shape == (N, H, W, 3) and int(entry.frames[2, 0, 0, 0]) == 2
    with pytest.raises(SourceNotFound):
        cache.get("bb")


@pytest.mark.parametrize("damage", ["truncate", "meta", "boxes"])
def test_a_corrupt_entry_is_ignored_and_can_be_rebuilt(tmp_path, damage):
    cache = SourceCache(str(tmp_path))
    path = put(cache, "aa").path
    if damage == "truncate":
        with open(os.path.join(path, "frames.u8"), "r+b") as f:
            f.truncate(10)
    elif damage == "meta":
        open(os.path.join(path, "meta.json"), "w").write("{not json")
    else:
        np.save(os.path.join(path, "boxes.npy"), np.zeros((1, 4), np.int32))
    assert not cache.has("aa")
    assert not os.path.exists(path)                              # moved aside, so a rebuild can take its place
    put(cache, "aa")
    assert cache.has("aa") and cache.get("aa").frames.shape == (N, H, W, 3)


def test_lru_eviction_keeps_recently_used_entries(tmp_path):
    size = entry_bytes(tmp_path)
    cache = SourceCache(str(tmp_path / "c"), max_bytes=int(2.5 * size))
    put(cache, "aa")
    put(cache, "bb")
    old = time.time() - 100
    os.utime(cache.path("aa"), (old, old))
    os.utime(cache.path("bb"), (old + 10, old + 10))
    cache.get("aa")                                               # aa is now the most recently used
    put(cache, "cc")                                              # over the limit: bb goes
    assert cache.has("aa") and cache.has("cc") and not cache.has("bb")
    assert sum(s for _, s, _ in cache.entries()) <= 2.5 * size


def test_stale_temporary_folders_are_cleaned(tmp_path):
    cache = SourceCache(str(tmp_path))
    cache.writer("aa", W, H)                                      # a writer that crashed
    stale = [n for n in os.listdir(tmp_path) if n.startswith(".tmp-")][0]
    cache.clean_stale_temp(older_than_s=3600)
    assert stale in os.listdir(tmp_path)                          # recent: may still be in progress
    old = time.time() - 7200
    os.utime(os.path.join(tmp_path, stale), (old, old))
    cache.clean_stale_temp(older_than_s=3600)
    assert os.listdir(tmp_path) == []
