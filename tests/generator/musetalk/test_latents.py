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


def test_latents_are_found_again_while_cached_and_go_with_an_evicted_source(tmp_path):
    models = tmp_path / "models"
    (models / "sd-vae").mkdir(parents=True)
    (models / "sd-vae" / "diffusion_pytorch_model.bin").write_bytes(b"weights")
    media = tmp_path / "face.media"
    media.write_bytes(os.urandom(4096))
    cache = SourceCache(str(tmp_path / "cache"))
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
