"""Reference latents live in the source cache's derived-data area: found again while the source is cached, gone
with it when it is evicted (preprocess owns and evicts the entry folders; the generator only derives from them)."""
import os

import numpy as np
import torch

from lipsync_common.formats.source_cache import SourceCache, SourceMeta
from services.generator.engines.musetalk.engine import MuseTalkEngine

N = 3


class CountingModel:
    """Stands in for the networks: `encode_crops` gives a latent per crop and counts its calls."""
    device, dtype = torch.device("cpu"), torch.float32

    def __init__(self):
        self.calls = 0

    def encode_crops(self, crops: np.ndarray) -> torch.Tensor:
        self.calls += 1
        return torch.full((len(crops), 8, 32, 32), float(crops.mean()))


def put(cache: SourceCache, sid: str, media: str):
    w = cache.writer(sid, media)
    for i in range(N):
        w.add(np.zeros((16, 16, 3), np.uint8), i, i == 0, (0, 0, 16, 16), np.full((256, 256, 3), 10 * i, np.uint8),
              np.zeros((256, 256), np.uint8), np.zeros((468, 2), np.float32), True)
    return w.commit(SourceMeta(sid, N, 25.0, 16, 16, False, N, (0, 0)))


def latent_files(root: str) -> list[str]:
    return sorted(os.path.relpath(os.path.join(d, f), root) for d, _, files in os.walk(root) for f in files
                  if f.startswith("latents-"))


def setup(tmp_path):
    """A models folder with a VAE file (its stat keys the latents), a face media file and a source cache."""
    models = tmp_path / "models"
    (models / "sd-vae").mkdir(parents=True)
    (models / "sd-vae" / "diffusion_pytorch_model.bin").write_bytes(b"weights")
    media = tmp_path / "face.media"
    media.write_bytes(os.urandom(4096))
    return models, media, SourceCache(str(tmp_path / "cache"))


def test_latents_are_found_again_while_cached_and_go_with_an_evicted_source(tmp_path):
    models, media, cache = setup(tmp_path)
    engine, model = MuseTalkEngine(str(models)), CountingModel()

    first = engine._latents(put(cache, "aa", str(media)), model, "v15")
    assert model.calls == 1 and first.shape == (N, 8, 32, 32)
    files = latent_files(cache.root)
    assert len(files) == 1 and files[0].startswith(os.path.join("derived", "aa", "latents") + os.sep)
    again = engine._latents(cache.get("aa"), model, "v15")
    assert model.calls == 1 and torch.equal(first, again)           # found again: not encoded twice
    entry_size = dict((os.path.basename(p), s) for _, s, p in cache.entries())["aa"]
    assert entry_size >= os.path.getsize(os.path.join(cache.root, files[0]))   # counted with its entry

    cache.max_bytes = 1                                              # the next commit evicts every other entry
    put(cache, "bb", str(media))
    assert not cache.has("aa") and latent_files(cache.root) == []
    assert not os.path.exists(os.path.join(cache.root, "derived", "aa"))

    engine._latents(put(cache, "aa", str(media)), model, "v15")     # prepared again: encoded again
    assert model.calls == 2


def test_latents_are_kept_in_memory_by_recent_use_and_a_source_prepared_again_is_not_stale(tmp_path, monkeypatch):
    """A known avatar's latents are not read from the cache again; the memory they take is bounded (least recently
    used go first); a source evicted and prepared again gets its new latents, not the kept ones."""
    from services.generator.engines.musetalk.engine import MuseTalkSettings
    models, media, cache = setup(tmp_path)
    loads = []
    real_load = torch.load
    monkeypatch.setattr(torch, "load", lambda *a, **k: loads.append(a[0]) or real_load(*a, **k))
    one = N * 8 * 32 * 32 * 4                                     # bytes of one source's float32 latents
    engine, model = MuseTalkEngine(str(models), MuseTalkSettings(latent_cache_mb=1)), CountingModel()
    assert one * 2 < 2**20 < one * 100

    first = engine._latents(put(cache, "aa", str(media)), model, "v15")
    again = engine._latents(cache.get("aa"), model, "v15")
    assert again is first and loads == [] and model.calls == 1     # kept: neither read nor encoded again

    fresh = MuseTalkEngine(str(models), MuseTalkSettings(latent_cache_mb=0))   # nothing kept: read each time
    fresh._latents(cache.get("aa"), model, "v15")
    fresh._latents(cache.get("aa"), model, "v15")
    assert len(loads) == 2 and model.calls == 1

    engine.settings = MuseTalkSettings(latent_cache_mb=one * 2 / 2**20)     # room for two sources
    engine._latents(put(cache, "bb", str(media)), model, "v15")
    engine._latents(cache.get("aa"), model, "v15")                # aa used last: bb is the oldest
    engine._latents(put(cache, "cc", str(media)), model, "v15")    # evicts bb
    assert len(loads) == 2
    engine._latents(cache.get("bb"), model, "v15")
    assert len(loads) == 3                                         # bb read from the cache again
    engine._latents(cache.get("cc"), model, "v15")
    assert len(loads) == 3

    cache.max_bytes = 1                                            # aa evicted from the source cache...
    put(cache, "dd", str(media))
    cache.max_bytes = 10**12
    calls = model.calls
    media.write_bytes(os.urandom(4096))
    engine._latents(put(cache, "aa", str(media)), model, "v15")    # ...and prepared again: encoded again
    assert model.calls == calls + 1
