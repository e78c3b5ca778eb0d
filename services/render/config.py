"""Render settings, read once from the environment (documented in the README)."""
from __future__ import annotations

from dataclasses import dataclass, field

from lipsync_common.edge.config import EdgeConfig, Listen, env_float, env_int, env_str

X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow")


@dataclass(frozen=True)
class RenderConfig:
    # RENDER_HOST, RENDER_PORT, RENDER_PORT_FILE, GRACE_S
    listen: Listen = field(default_factory=lambda: Listen(port=50055, grace_s=20.0))
    cache_dir: str = "var/cache"         # the shared prepared-source cache (read only here)
    max_frames: int = 180000             # output frames of one render (an hour at 50 fps)
    render_threads: int = -1             # compositing threads shared by renders; -1 = 4 on >= 8 cores, else 0
    render_carry: int = -1               # frames left compositing when a message's add returns; -1 = 2 x threads
    x264_preset: str = "veryfast"        # x264 speed/size trade-off; faster presets give larger files
    x264_threads: int = 0                # threads of each render's x264 encoder; 0 = 1.5 per core, at most 12
    x264_lookahead: int = -1             # x264's rc-lookahead in frames; -1 = the preset's (10 for veryfast)
    decode_threads: int = -1             # ffmpeg threads decoding each render's source; -1 = 2 on >= 8 cores, else 1;
                                         # 0 = ffmpeg's choice
    first_fragment_s: float = 0.2        # length of the first MP4 fragment (a player starts on it); 0 = one GOP (1 s)
    last_fragment_s: float = 0.0         # the last frames, from a keyframe, by an encoder without x264's pipeline
                                         # (0 = none: it lengthened the end on a GPU box and on 2 cores, BENCHMARKS.md)
    gop_encoders: int = 1                # GOPs of one render encoded at once, each by its own x264 (1 = one x264)
    threads_by_load: bool = True         # x264/decoder threads (when automatic) by the renders running on the box
    edge: EdgeConfig = field(default_factory=EdgeConfig)   # MAX_CALLS, METRICS_PORT, LOG_LEVEL, ...

    def __post_init__(self):
        if self.x264_preset not in X264_PRESETS:
            raise ValueError(f"X264_PRESET {self.x264_preset!r} is not one of {', '.join(X264_PRESETS)}")
        if not -1 <= self.x264_lookahead <= 250:
            raise ValueError(f"X264_LOOKAHEAD must be -1 (the preset's) or 0-250, not {self.x264_lookahead}")
        if self.x264_threads < 0:
            raise ValueError(f"X264_THREADS must be >= 0 (0: 1.5 per core, at most 12), not {self.x264_threads}")
        if self.decode_threads < -1:
            raise ValueError(f"RENDER_DECODE_THREADS must be -1 (2 on >= 8 cores, else 1) or >= 0, not "
                             f"{self.decode_threads}")
        if not 0 <= self.first_fragment_s <= 1:
            raise ValueError(f"FIRST_FRAGMENT_S must be within 0-1 s, not {self.first_fragment_s}")
        if not 0 <= self.last_fragment_s <= 1:
            raise ValueError(f"LAST_FRAGMENT_S must be within 0-1 s, not {self.last_fragment_s}")
        if not 1 <= self.gop_encoders <= 16:
            raise ValueError(f"X264_GOP_ENCODERS must be within 1-16, not {self.gop_encoders}")

    @classmethod
    def from_env(cls) -> "RenderConfig":
        return cls(
            listen=Listen.from_env("render", 50055, 20.0),
            cache_dir=env_str("CACHE_DIR", cls.cache_dir),
            max_frames=env_int("MAX_RENDER_FRAMES", cls.max_frames),
            render_threads=env_int("RENDER_THREADS", cls.render_threads),
            render_carry=env_int("RENDER_CARRY", cls.render_carry),
            x264_preset=env_str("X264_PRESET", cls.x264_preset),
            x264_threads=env_int("X264_THREADS", cls.x264_threads),
            x264_lookahead=env_int("X264_LOOKAHEAD", cls.x264_lookahead),
            decode_threads=env_int("RENDER_DECODE_THREADS", cls.decode_threads),
            first_fragment_s=env_float("FIRST_FRAGMENT_S", cls.first_fragment_s),
            last_fragment_s=env_float("LAST_FRAGMENT_S", cls.last_fragment_s),
            gop_encoders=env_int("X264_GOP_ENCODERS", cls.gop_encoders),
            threads_by_load=env_str("RENDER_THREADS_BY_LOAD", "1") == "1",
            edge=EdgeConfig.from_env(),
        )
