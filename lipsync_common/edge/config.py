"""Settings every server shares, read once from the environment at startup (documented in the README).

Each service's own config (gateway/config.py, services/*/config.py) reads its settings with the env_* helpers
below and holds an EdgeConfig; `serve()`, `setup_logging()` and the auth helpers take it whole.
"""
from __future__ import annotations

import os
from dataclasses import dataclass


def env_str(name: str, default: str) -> str:
    return os.environ.get(name, default)


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise SystemExit(f"environment variable {name} must be an integer, got {raw!r}") from None


def env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise SystemExit(f"environment variable {name} must be a number, got {raw!r}") from None


@dataclass(frozen=True)
class EdgeConfig:
    max_calls: int = 64                  # MAX_CALLS: concurrent calls per process (0 = no limit)
    metrics_port: int = 0                # METRICS_PORT: Prometheus /metrics (0 = off)
    max_connection_age_s: int = 300      # MAX_CONNECTION_AGE_S: clients re-resolve after this (0 = never)
    log_level: str = "INFO"              # LOG_LEVEL
    internal_token: str = ""             # INTERNAL_TOKEN: internal services accept only calls carrying it

    @classmethod
    def from_env(cls) -> "EdgeConfig":
        return cls(
            max_calls=env_int("MAX_CALLS", cls.max_calls),
            metrics_port=env_int("METRICS_PORT", cls.metrics_port),
            max_connection_age_s=env_int("MAX_CONNECTION_AGE_S", cls.max_connection_age_s),
            log_level=env_str("LOG_LEVEL", cls.log_level),
            internal_token=env_str("INTERNAL_TOKEN", ""),
        )
