"""Token authentication for the gRPC servers.

- The gateway (public): `authorization: Bearer <token>` metadata, checked against AUTH_TOKENS (comma-separated)
  and/or AUTH_TOKENS_FILE (one token per line: a Kubernetes Secret mounted as a file). Without tokens the
  gateway refuses to start unless AUTH_MODE=local is set explicitly (`make up` and tests do).
- Internal services (preprocess, generator, evaluator): when INTERNAL_TOKEN is set they accept only calls that
  carry it in `x-lipsync-internal` metadata (the gateway sends it), so only the gateway can use them.
Health and reflection stay open (probes and tooling). Comparison is constant-time.
"""
from __future__ import annotations

import hmac

import grpc

from lipsync_common.edge.calls import abort
from lipsync_common.edge.config import EdgeConfig
from lipsync_common.edge.metrics import rewrap

INTERNAL_HEADER = "x-lipsync-internal"


class AuthConfigError(RuntimeError):
    pass


def load_tokens(tokens: str, tokens_file: str) -> set[str]:
    found = {t.strip() for t in tokens.split(",") if t.strip()}
    if tokens_file:
        try:
            with open(tokens_file) as f:
                found |= {line.strip() for line in f if line.strip() and not line.startswith("#")}
        except OSError as e:
            raise AuthConfigError(f"AUTH_TOKENS_FILE {tokens_file} cannot be read: {e}") from None
    return found


def gateway_tokens(mode: str, tokens: str, tokens_file: str) -> set[str] | None:
    """The accepted bearer tokens, or None in local mode (no authentication)."""
    if mode not in ("token", "local"):
        raise AuthConfigError(f"AUTH_MODE must be 'token' or 'local', not {mode!r}")
    found = load_tokens(tokens, tokens_file)
    if mode == "local":
        return None
    if not found:
        raise AuthConfigError("no tokens: set AUTH_TOKENS or AUTH_TOKENS_FILE, or AUTH_MODE=local to run "
                              "without authentication (local development only)")
    return found


def _matches(given: str, accepted: set[str]) -> bool:
    ok = False
    for t in accepted:      # no early exit: the time does not tell which token was close
        ok |= hmac.compare_digest(given.encode(), t.encode())
    return ok


def _deny(code: grpc.StatusCode, message: str, streaming_request: bool, streaming_response: bool,
          trailers: tuple = ()):
    """A handler that refuses the call (after draining a request stream briefly: a status sent while the
    client still writes can reach it as INTERNAL instead)."""
    async def refuse(request_or_iterator, context):
        if trailers:
            context.set_trailing_metadata(trailers)
        if streaming_request:
            await abort(context, request_or_iterator, code, message, drain_s=2.0)
        await context.abort(code, message)

    if not streaming_response:
        return refuse

    async def refuse_stream(request_or_iterator, context):
        await refuse(request_or_iterator, context)
        yield  # an async generator, as grpc expects for a streaming response (never reached)

    return refuse_stream


class TokenInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, accepted: set[str], header: str = "authorization", bearer: bool = True):
        self.accepted = accepted
        self.header = header
        self.bearer = bearer

    async def intercept_service(self, continuation, details):
        handler = await continuation(details)
        if handler is None or details.method.startswith("/grpc."):
            return handler
        meta = {k.lower(): v for k, v in (details.invocation_metadata or ())}
        value = meta.get(self.header, "")
        if self.bearer:
            value = value[7:].strip() if value[:7].lower() == "bearer " else ""
        if value and _matches(value, self.accepted):
            return handler
        why = ("missing or invalid bearer token (send 'authorization: Bearer <token>')" if self.bearer
               else "this service accepts only the gateway (missing or invalid internal token)")
        return deny_handler(handler, grpc.StatusCode.UNAUTHENTICATED, why)


def deny_handler(handler, code: grpc.StatusCode, message: str, trailers: tuple = ()):
    """A method handler of the same kind as `handler` that refuses every call with code and message."""
    return rewrap(handler, lambda _, streaming_request, streaming_response: _deny(
        code, message, streaming_request, streaming_response, trailers))


def internal_interceptors(token: str | None = None) -> list:
    """For internal services: require the internal token (EdgeConfig.internal_token) when it is set.
    None: read it from the environment now (EdgeConfig.from_env)."""
    if token is None:
        token = EdgeConfig.from_env().internal_token
    return [TokenInterceptor({token}, INTERNAL_HEADER, bearer=False)] if token else []


def internal_metadata(token: str) -> tuple:
    """The metadata that carries the internal token (EdgeConfig.internal_token) to an internal service."""
    return ((INTERNAL_HEADER, token),) if token else ()
