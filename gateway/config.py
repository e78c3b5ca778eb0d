"""Gateway settings, read once from the environment (documented in the README)."""
from __future__ import annotations

from dataclasses import dataclass, field

from lipsync_common.edge.config import EdgeConfig, Listen, env_float, env_int, env_str


@dataclass(frozen=True)
class GatewayConfig:
    # GATEWAY_HOST, GATEWAY_PORT, GATEWAY_PORT_FILE, GRACE_S
    listen: Listen = field(default_factory=lambda: Listen(port=50051, grace_s=30.0))
    preprocess_addr: str = "127.0.0.1:50052"
    generator_addr: str = "127.0.0.1:50053"
    # render workers: one address, a comma list ("ipv4:127.0.0.1:50055,127.0.0.1:50056") or a DNS name
    # ("dns:///render-headless:50055"); calls are spread round_robin over every address
    render_addr: str = "127.0.0.1:50055"
    evaluator_addr: str = ""             # "" = no evaluator: LipsyncOptions.evaluate gets FAILED_PRECONDITION
    results_dir: str = "var/results"     # jobs and their MP4s; survives restarts
    tmp_dir: str = ""                    # uploads of streaming calls ("" = the system temp dir)
    max_upload_bytes: int = 512 * 1024 * 1024
    max_audio_s: float = 600.0
    max_streams: int = 8                 # concurrent Lipsync calls; more get RESOURCE_EXHAUSTED
    max_live: int = 16                   # concurrent LiveSession calls; more get RESOURCE_EXHAUSTED
    live_margin_ms: float = 100.0        # a live frame goes to render this long after its lookahead was fed
    live_align: bool = False             # live frames fed on a shared grid (one batch for all sessions)
    job_workers: int = 2                 # jobs run at once; the rest wait in the queue
    max_queued_jobs: int = 100
    job_retries: int = 3                 # a job stage that finds a service UNAVAILABLE is tried again
    job_retry_base_s: float = 1.0        # backoff 1, 2, 4 s
    url_timeout_s: float = 30.0          # face_url / audio_url: total fetch time
    url_allow_loopback: bool = False     # tests only: admit 127.0.0.0/8 URLs
    auth_mode: str = "token"             # "token": bearer tokens required; "local": no authentication
    auth_tokens: str = ""                # comma-separated accepted tokens
    auth_tokens_file: str = ""           # one token per line (a mounted Kubernetes Secret)
    edge: EdgeConfig = field(default_factory=EdgeConfig)   # MAX_CALLS, METRICS_PORT, LOG_LEVEL, ...

    @classmethod
    def from_env(cls) -> "GatewayConfig":
        return cls(
            listen=Listen.from_env("gateway", 50051, 30.0),
            preprocess_addr=env_str("PREPROCESS_ADDR", cls.preprocess_addr),
            generator_addr=env_str("GENERATOR_ADDR", cls.generator_addr),
            render_addr=env_str("RENDER_ADDR", cls.render_addr),
            evaluator_addr=env_str("EVALUATOR_ADDR", ""),
            results_dir=env_str("RESULTS_DIR", cls.results_dir),
            tmp_dir=env_str("TMP_DIR", ""),
            max_upload_bytes=env_int("MAX_UPLOAD_BYTES", cls.max_upload_bytes),
            max_audio_s=env_float("MAX_AUDIO_S", cls.max_audio_s),
            max_streams=env_int("MAX_STREAMS", cls.max_streams),
            max_live=env_int("MAX_LIVE", cls.max_live),
            live_margin_ms=env_float("LIVE_MARGIN_MS", cls.live_margin_ms),
            live_align=env_str("LIVE_ALIGN", "0") == "1",
            job_workers=env_int("JOB_WORKERS", cls.job_workers),
            max_queued_jobs=env_int("MAX_QUEUED_JOBS", cls.max_queued_jobs),
            job_retries=env_int("JOB_RETRIES", cls.job_retries),
            job_retry_base_s=env_float("JOB_RETRY_BASE_S", cls.job_retry_base_s),
            url_timeout_s=env_float("URL_TIMEOUT_S", cls.url_timeout_s),
            url_allow_loopback=env_str("URL_ALLOW_LOOPBACK", "") == "1",
            auth_mode=env_str("AUTH_MODE", cls.auth_mode),
            auth_tokens=env_str("AUTH_TOKENS", ""),
            auth_tokens_file=env_str("AUTH_TOKENS_FILE", ""),
            edge=EdgeConfig.from_env(),
        )
