"""The web room's edge: the Gradio page on a FastAPI app with /healthz (readiness: the gateway answers its health
check) and /metrics (Prometheus), behind the gateway's token auth (AUTH_MODE, AUTH_TOKENS, AUTH_TOKENS_FILE: the same settings and rules). Run: python -m services.web.server
"""
from __future__ import annotations

import logging
import os
import tempfile

import grpc
import gradio as gr
import uvicorn
from fastapi import FastAPI, Response
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client import CONTENT_TYPE_LATEST, Counter, generate_latest

from lipsync_client.client import LipsyncClient
from lipsync_common.edge.auth import gateway_tokens
from services.web import page
from services.web.config import WebConfig

log = logging.getLogger("web")
REQUESTS = Counter("lipsync_web_health_checks", "Health checks answered", ["result"])


def gateway_serving(addr: str, timeout: float = 2.0) -> bool:
    with grpc.insecure_channel(addr) as ch:
        try:
            status = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=timeout).status
        except grpc.RpcError:
            return False
    return status == health_pb2.HealthCheckResponse.SERVING


def create_app(cfg: WebConfig) -> FastAPI:
    app = FastAPI(title="lipsync web")

    @app.get("/healthz")
    def healthz(response: Response) -> dict:
        ok = gateway_serving(cfg.gateway_addr)
        REQUESTS.labels("serving" if ok else "not_serving").inc()
        response.status_code = 200 if ok else 503
        return {"status": "SERVING" if ok else "NOT_SERVING", "gateway": cfg.gateway_addr}

    @app.get("/metrics")
    def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    tokens = gateway_tokens(cfg.auth_mode, cfg.auth_tokens, cfg.auth_tokens_file)    # None: local mode
    work_dir = cfg.work_dir or os.path.join(tempfile.gettempdir(), "lipsync-web")
    blocks = page.build(lambda: LipsyncClient(cfg.gateway_addr, token=cfg.gateway_token), work_dir,
                        (cfg.gateway_addr, cfg.gateway_token))
    return gr.mount_gradio_app(app, blocks, path="/",
                               auth=(lambda _user, password: password in tokens) if tokens is not None else None,
                               auth_message="Sign in with any name and one of the gateway's tokens as password.",
                               allowed_paths=[work_dir], max_file_size=cfg.max_upload_mb * 1024 * 1024)


def main() -> None:
    cfg = WebConfig.from_env()
    logging.basicConfig(level=logging.INFO)
    log.info("web page on http://%s:%d, gateway %s", cfg.host, cfg.port, cfg.gateway_addr)
    uvicorn.run(create_app(cfg), host=cfg.host, port=cfg.port, log_level="warning")


if __name__ == "__main__":
    main()
