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
    return _env_number(name, default, int, "an integer")


def env_float(name: str, default: float) -> float:
    return _env_number(name, default, float, "a number")


def _env_number(name: str, default, cast, what: str):
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return cast(raw)
    except ValueError:
        raise SystemExit(f"environment variable {name} must be {what}, got {raw!r}") from None


@dataclass(frozen=True)
class EdgeConfig:
    max_calls: int = 64                  # MAX_CALLS: concurrent calls per process (0 = no limit)
    metrics_port: int = 0                # METRICS_PORT: Prometheus /metrics (0 = off)
    max_connection_age_s: int = 300      # MAX_CONNECTION_AGE_S: clients re-resolve after this (0 = never)
    log_level: str = "INFO"              # LOG_LEVEL
    internal_token: str = ""             # INTERNAL_TOKEN: internal services accept only calls carrying it
    gc_freeze: bool = True               # GC_FREEZE: after warm-up, what is alive leaves the collector's passes

    @classmethod
    def from_env(cls) -> "EdgeConfig":
        return cls(
            max_calls=env_int("MAX_CALLS", cls.max_calls),
            metrics_port=env_int("METRICS_PORT", cls.metrics_port),
            max_connection_age_s=env_int("MAX_CONNECTION_AGE_S", cls.max_connection_age_s),
            log_level=env_str("LOG_LEVEL", cls.log_level),
            internal_token=env_str("INTERNAL_TOKEN", ""),
            gc_freeze=env_str("GC_FREEZE", "1") == "1",
        )


@dataclass(frozen=True)
class Listen:
    """Where one server listens and how long it drains on a stop: <ROOM>_HOST, <ROOM>_PORT, <ROOM>_PORT_FILE
    (write the bound port there: with port 0, any free port) and GRACE_S."""
    host: str = "127.0.0.1"
    port: int = 0
    port_file: str = ""
    grace_s: float = 20.0

    @classmethod
    def from_env(cls, room: str, port: int, grace_s: float = 20.0) -> "Listen":
        prefix = room.upper()
        return cls(host=env_str(f"{prefix}_HOST", cls.host), port=env_int(f"{prefix}_PORT", port),
                   port_file=env_str(f"{prefix}_PORT_FILE", ""), grace_s=env_float("GRACE_S", grace_s))
