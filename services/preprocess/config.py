"""Preprocess settings, read once from the environment (documented in the README)."""
from __future__ import annotations

from dataclasses import dataclass, field

from lipsync_common.edge.config import EdgeConfig, Listen, env_int, env_str


@dataclass(frozen=True)
class PreprocessConfig:
    # PREPROCESS_HOST, PREPROCESS_PORT, PREPROCESS_PORT_FILE, GRACE_S
    listen: Listen = field(default_factory=lambda: Listen(port=50052, grace_s=20.0))
    cache_dir: str = "var/cache"         # the shared prepared-source cache
    cache_max_bytes: int = 50 * 1024**3  # LRU eviction above this (0 = no limit)
    tmp_dir: str = ""                    # uploads in flight ("" = the system temp dir)
    max_upload_bytes: int = 512 * 1024 * 1024
    max_pixels: int = 3840 * 2160
    max_frames: int = 18000              # 10 minutes at 30 fps
    models_dir: str = "models"           # face-parsing weights: face-parse-bisent/79999_iter.pth (optional)
    edge: EdgeConfig = field(default_factory=EdgeConfig)   # MAX_CALLS, METRICS_PORT, LOG_LEVEL, ...

    @classmethod
    def from_env(cls) -> "PreprocessConfig":
        return cls(
            listen=Listen.from_env("preprocess", 50052, 20.0),
            cache_dir=env_str("CACHE_DIR", cls.cache_dir),
            cache_max_bytes=env_int("CACHE_MAX_BYTES", cls.cache_max_bytes),
            tmp_dir=env_str("TMP_DIR", ""),
            max_upload_bytes=env_int("MAX_UPLOAD_BYTES", cls.max_upload_bytes),
            max_pixels=env_int("MAX_PIXELS", cls.max_pixels),
            max_frames=env_int("MAX_SOURCE_FRAMES", cls.max_frames),
            models_dir=env_str("MODELS_DIR", cls.models_dir),
            edge=EdgeConfig.from_env(),
        )
