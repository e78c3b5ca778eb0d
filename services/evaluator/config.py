"""Evaluator settings, read once from the environment (documented in the README)."""
from __future__ import annotations

from dataclasses import dataclass, field

from lipsync_common.edge.config import EdgeConfig, Listen, env_int, env_str


@dataclass(frozen=True)
class EvaluatorConfig:
    # EVALUATOR_HOST, EVALUATOR_PORT, EVALUATOR_PORT_FILE, GRACE_S
    listen: Listen = field(default_factory=lambda: Listen(port=50054, grace_s=20.0))
    models_dir: str = "models"           # syncnet/syncnet_v2.model, arcface/*.onnx (both optional)
    arcface_model: str = ""              # explicit ArcFace .onnx
    tmp_dir: str = ""
    max_upload_bytes: int = 512 * 1024 * 1024
    fid_frames: int = 32
    csim_frames: int = 50
    edge: EdgeConfig = field(default_factory=EdgeConfig)   # MAX_CALLS, METRICS_PORT, LOG_LEVEL, ...

    @classmethod
    def from_env(cls) -> "EvaluatorConfig":
        return cls(
            listen=Listen.from_env("evaluator", 50054, 20.0),
            models_dir=env_str("MODELS_DIR", cls.models_dir),
            arcface_model=env_str("ARCFACE_MODEL", ""),
            tmp_dir=env_str("TMP_DIR", ""),
            max_upload_bytes=env_int("MAX_UPLOAD_BYTES", cls.max_upload_bytes),
            fid_frames=env_int("EVAL_FID_FRAMES", cls.fid_frames),
            csim_frames=env_int("EVAL_CSIM_FRAMES", cls.csim_frames),
            edge=EdgeConfig.from_env(),
        )

    def settings(self):
        from services.evaluator.evaluate import EvalSettings
        return EvalSettings(models_dir=self.models_dir, arcface_model=self.arcface_model, fid_frames=self.fid_frames,
                            csim_frames=self.csim_frames)
