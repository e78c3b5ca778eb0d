"""Generator settings, read once from the environment (documented in the README)."""
from __future__ import annotations

from dataclasses import dataclass, field
import os

from lipsync_common.edge.config import EdgeConfig, Listen, env_float, env_int, env_str


def default_speech_cache(xdg_cache_home: str = "") -> str:
    """$XDG_CACHE_HOME/lipsync/speech, ~/.cache/lipsync/speech without it: the one default."""
    return os.path.join(xdg_cache_home or os.path.expanduser("~/.cache"), "lipsync", "speech")


@dataclass(frozen=True)
class GeneratorConfig:
    # GENERATOR_HOST, GENERATOR_PORT, GENERATOR_PORT_FILE, GRACE_S
    listen: Listen = field(default_factory=lambda: Listen(port=50053, grace_s=20.0))
    cache_dir: str = "var/cache"     # the prepared-source cache written by preprocess (shared)
    models_dir: str = "models"       # MuseTalk weights in the official layout
    batch_size: int = 8              # crops per streamed message (8 x 192 KB, well under 4 MB)
    max_audio_s: float = 600.0
    device: str = ""                 # musetalk: "" = cuda when available, else cpu
    dtype: str = ""                  # musetalk: "" = float16 on cuda, float32 on cpu
    max_batch: int = 32              # musetalk: frames per GPU pass, across requests
    max_wait_ms: float = 4.0         # musetalk: how long a batch waits for more frames
    latent: str = "mode"             # musetalk: VAE posterior "mode" (deterministic) or "sample"
    compile: bool | None = None      # musetalk: torch.compile; unset = on for cuda, off for cpu
    fused: bool | None = None        # musetalk: Triton GroupNorm kernels etc.; unset = on for cuda
    fused_unet: bool = False         # musetalk: those kernels in the UNet too (no gain measured there)
    decode_chunk: int = 16           # musetalk: frames decoded at a time within a batch (memory); 0 = all
    phase_upsample: bool = True      # musetalk: upsample + 3x3 conv as one 2x2 conv per phase; off = diffusers' path
    live_lookahead: int = 2          # musetalk live sessions: frames of audio after a frame before its crop (>= 2)
    side_gather_ms: float = 3.0      # musetalk: how long whisper waits for more requests/sessions to batch with
    whisper_graphs: bool = False     # musetalk on cuda: whisper's encoder as CUDA graphs (no gain measured)
    split_batches: bool = True       # musetalk: a batch as the compiled sizes of least time (BENCHMARKS.md: live sessions)
    latent_cache_mb: int = 512       # musetalk: sources' reference latents kept on the device (most recent first)
    launch_lead_ms: float = 10.0     # musetalk: next batch launched this long before the running one's due end; < 0: once full
    pending_head_batch: int = 0      # musetalk: other batches' size while a new request prepares; 0: max_batch // 2
    live_batch: int = 0              # musetalk: frames in a batch holding live frames; 0: max_batch // 2
    live_fit: bool = True            # musetalk: a batch holding live frames filled only to the size that fits them
    beside_live_batch: int = 0       # musetalk: other batches' size while live frames flow; 0: max_batch // 2
    head_s: float = 0.12             # musetalk: a new request's frames ahead of others: this long + 1 frame
    finish_frames: int = 16          # musetalk: a request's last frames go first (older requests first); 0: off
    # how long a Python thread may hold the GIL while another waits (Python's default is 5 ms): the batcher, the
    # whisper thread and the event loop hand it over often, and each handover waited up to that long
    switch_interval_ms: float = 1.0
    # visemes: where the multilingual whisper model is joined (~145 MB, once); the one default, used everywhere
    speech_cache_dir: str = field(default_factory=default_speech_cache)
    edge: EdgeConfig = field(default_factory=EdgeConfig)   # MAX_CALLS, METRICS_PORT, LOG_LEVEL, ...

    def __post_init__(self):
        if not 0 <= self.head_s <= 2:
            raise ValueError(f"MUSETALK_HEAD_S must be within 0-2 s, not {self.head_s}")
        for name, value in (("MUSETALK_LIVE_BATCH", self.live_batch),
                            ("MUSETALK_PENDING_HEAD_BATCH", self.pending_head_batch),
                            ("MUSETALK_BESIDE_LIVE_BATCH", self.beside_live_batch)):
            if value < 0:
                raise ValueError(f"{name} must be >= 0 (0: half of MUSETALK_MAX_BATCH), not {value}")
        if self.finish_frames < 0:
            raise ValueError(f"MUSETALK_FINISH_FRAMES must be >= 0 (0: off), not {self.finish_frames}")

    @classmethod
    def from_env(cls) -> "GeneratorConfig":
        return cls(
            listen=Listen.from_env("generator", 50053, 20.0),
            cache_dir=env_str("CACHE_DIR", cls.cache_dir),
            models_dir=env_str("MODELS_DIR", cls.models_dir),
            batch_size=env_int("GENERATOR_BATCH", cls.batch_size),
            max_audio_s=env_float("MAX_AUDIO_S", cls.max_audio_s),
            device=env_str("MUSETALK_DEVICE", ""),
            dtype=env_str("MUSETALK_DTYPE", ""),
            max_batch=env_int("MUSETALK_MAX_BATCH", cls.max_batch),
            max_wait_ms=env_float("MUSETALK_MAX_WAIT_MS", cls.max_wait_ms),
            latent=env_str("MUSETALK_LATENT", cls.latent),
            compile=None if env_str("MUSETALK_COMPILE", "") == "" else env_str("MUSETALK_COMPILE", "") == "1",
            fused=None if env_str("MUSETALK_FUSED", "") == "" else env_str("MUSETALK_FUSED", "") == "1",
            fused_unet=env_str("MUSETALK_FUSED_UNET", "0") == "1",
            decode_chunk=env_int("MUSETALK_DECODE_CHUNK", cls.decode_chunk),
            phase_upsample=env_str("MUSETALK_PHASE_UPSAMPLE", "1") != "0",
            live_lookahead=env_int("MUSETALK_LIVE_LOOKAHEAD", cls.live_lookahead),
            side_gather_ms=env_float("MUSETALK_SIDE_GATHER_MS", cls.side_gather_ms),
            whisper_graphs=env_str("MUSETALK_WHISPER_GRAPHS", "0") == "1",
            split_batches=env_str("MUSETALK_SPLIT_BATCHES", "1") == "1",
            latent_cache_mb=env_int("MUSETALK_LATENT_CACHE_MB", cls.latent_cache_mb),
            launch_lead_ms=env_float("MUSETALK_LAUNCH_LEAD_MS", cls.launch_lead_ms),
            pending_head_batch=env_int("MUSETALK_PENDING_HEAD_BATCH", cls.pending_head_batch),
            live_batch=env_int("MUSETALK_LIVE_BATCH", cls.live_batch),
            live_fit=env_str("MUSETALK_LIVE_FIT", "1" if cls.live_fit else "0") == "1",
            beside_live_batch=env_int("MUSETALK_BESIDE_LIVE_BATCH", cls.beside_live_batch),
            head_s=env_float("MUSETALK_HEAD_S", cls.head_s),
            finish_frames=env_int("MUSETALK_FINISH_FRAMES", cls.finish_frames),
            switch_interval_ms=env_float("PY_SWITCH_INTERVAL_MS", cls.switch_interval_ms),
            # unset or empty: the default, under XDG_CACHE_HOME when that is set
            speech_cache_dir=env_str("SPEECH_CACHE_DIR", "") or default_speech_cache(env_str("XDG_CACHE_HOME", "")),
            edge=EdgeConfig.from_env(),
        )
