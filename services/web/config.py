"""Web page settings, read once from the environment (documented in the README)."""
from __future__ import annotations

from dataclasses import dataclass

from lipsync_common.edge.config import env_int, env_str


@dataclass(frozen=True)
class WebConfig:
    host: str = "127.0.0.1"
    port: int = 7860
    gateway_addr: str = "127.0.0.1:50051"  # the gateway this page calls (never the services behind it)
    gateway_token: str = ""                # the bearer token for the gateway's calls; "" = the gateway's local mode
    auth_mode: str = "token"               # as the gateway's: "token" (sign in with a token) or "local" (no sign-in)
    auth_tokens: str = ""                  # comma-separated: a visitor signs in with one as password (any user name)
    auth_tokens_file: str = ""             # one token per line (a Kubernetes Secret mounted as a file)
    work_dir: str = ""                     # where generated videos are written ("" = the system's temp dir)
    max_upload_mb: int = 512               # largest file a visitor may upload

    @classmethod
    def from_env(cls) -> "WebConfig":
        return cls(
            host=env_str("WEB_HOST", cls.host),
            port=env_int("WEB_PORT", cls.port),
            gateway_addr=env_str("GATEWAY_ADDR", cls.gateway_addr),
            gateway_token=env_str("LIPSYNC_TOKEN", ""),
            auth_mode=env_str("AUTH_MODE", cls.auth_mode),
            auth_tokens=env_str("AUTH_TOKENS", ""),
            auth_tokens_file=env_str("AUTH_TOKENS_FILE", ""),
            work_dir=env_str("WEB_WORK_DIR", ""),
            max_upload_mb=env_int("WEB_MAX_UPLOAD_MB", cls.max_upload_mb),
        )
