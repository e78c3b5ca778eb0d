"""MuseTalk engine: the official checkpoints in the official layout under MODELS_DIR.

This build checks the weight files and reports exactly which are missing; the network code (UNet, SD-VAE,
whisper features, batched GPU generation) is the next step of the roadmap and is not in this build, so the
engine reports itself unavailable rather than pretending.
"""
from __future__ import annotations

import os
from typing import Iterator

import numpy as np

from lipsync_common.source_cache import SourceEntry
from services.generator.engines.base import EngineUnavailable

# Files in the official MuseTalk layout (a file may have alternatives, e.g. .bin or .safetensors).
COMMON_FILES = [
    ("sd-vae/config.json",),
    ("sd-vae/diffusion_pytorch_model.bin", "sd-vae/diffusion_pytorch_model.safetensors"),
    ("whisper/config.json",),
    ("whisper/pytorch_model.bin", "whisper/model.safetensors"),
    ("whisper/preprocessor_config.json",),
]
VERSION_FILES = {
    "v15": [("musetalkV15/unet.pth",), ("musetalkV15/musetalk.json",)],
    "v1": [("musetalk/pytorch_model.bin",), ("musetalk/musetalk.json",)],
}


def missing_files(models_dir: str, version: str) -> list[str]:
    missing = []
    for alternatives in VERSION_FILES[version] + COMMON_FILES:
        if not any(os.path.isfile(os.path.join(models_dir, p)) for p in alternatives):
            missing.append(" or ".join(alternatives))
    return missing


class MuseTalkEngine:
    name = "musetalk"
    description = "MuseTalk latent inpainting (UNet + SD-VAE + whisper-tiny), official checkpoints"

    def __init__(self, models_dir: str):
        self.models_dir = models_dir

    def check(self, version: str) -> None:
        missing = missing_files(self.models_dir, version)
        if missing:
            raise EngineUnavailable(
                f"musetalk {version} weights not found in MODELS_DIR={os.path.abspath(self.models_dir)}: missing "
                + ", ".join(missing) + ". Run `make weights` (or put the official files there), or use engine 'warp'.")
        raise EngineUnavailable("the musetalk engine's network code is not in this build yet; use engine 'warp'")

    def available(self) -> tuple[bool, str]:
        try:
            self.check("v15")
        except EngineUnavailable as e:
            return False, str(e)
        return True, ""

    def load(self) -> None:
        pass  # nothing to load until the weights and the network code are present

    def generate(self, source: SourceEntry, audio: np.ndarray, sample_rate: int, fps: float,
                 batch_size: int, version: str = "v15") -> Iterator[np.ndarray]:
        self.check(version)
        return iter(())

    def close(self) -> None:
        pass
