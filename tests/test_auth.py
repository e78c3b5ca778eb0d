"""Authentication both ways: the gateway's bearer tokens (from a list or a Secret-style file), internal services
that accept only the gateway's token, local mode without tokens, and a gateway that refuses to start unset."""
import os
import subprocess
import sys

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from lipsync.v1 import gateway_pb2, gateway_pb2_grpc, generator_pb2, generator_pb2_grpc
from lipsync_client import LipsyncClient
from lipsync_common.edge.auth import AuthConfigError, gateway_tokens
from tests import helpers
from tools.stack import ROOT, Stack


@pytest.fixture(scope="module")
def secured(tmp_path_factory):
    folder = tmp_path_factory.mktemp("secured")
    tokens = folder / "tokens"
    tokens.write_text("# one per line\nfile-token-1\n")
    s = Stack.start(str(folder), env={"AUTH_MODE": "token", "AUTH_TOKENS": "list-token-1, list-token-2",
                                      "AUTH_TOKENS_FILE": str(tokens), "INTERNAL_TOKEN": "internal-xyz",
                                      "MODELS_DIR": str(folder / "models")})
    yield s
    s.stop()


def code_of(fn):
    with pytest.raises(grpc.RpcError) as e:
        fn()
    return e.value.code(), e.value.details()


@pytest.mark.parametrize("metadata", [None, (("authorization", "Bearer nope"),), (("authorization", "list-token-1"),)])
def test_gateway_refuses_calls_without_a_valid_token(secured, metadata):
    with grpc.insecure_channel(secured.addrs["gateway"]) as ch:
        stub = gateway_pb2_grpc.LipsyncGatewayStub(ch)
        code, details = code_of(lambda: stub.GetJob(gateway_pb2.GetJobRequest(job_id="x" * 8), metadata=metadata))
        assert code == grpc.StatusCode.UNAUTHENTICATED and "bearer token" in details
        code, _ = code_of(lambda: list(stub.Lipsync(iter([gateway_pb2.LipsyncRequest()]), metadata=metadata)))
        assert code == grpc.StatusCode.UNAUTHENTICATED
        health = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest())   # probes stay open
        assert health.status == health_pb2.HealthCheckResponse.SERVING


@pytest.mark.parametrize("token", ["list-token-2", "file-token-1"])
def test_valid_tokens_work_end_to_end(secured, token, tmp_path):
    face = helpers.write_png(str(tmp_path / "f.png"), helpers.face_image())
    audio = helpers.write_wav(str(tmp_path / "a.wav"), helpers.speech_like([(0.4, True)]))
    with LipsyncClient(secured.addrs["gateway"], token=token) as c:
        s = c.lipsync(face, audio, str(tmp_path / "o.mp4"))   # the gateway reaches the internal services
    assert s.frames == 10


def test_internal_services_accept_only_the_gateway(secured):
    with grpc.insecure_channel(secured.addrs["generator"]) as ch:
        stub = generator_pb2_grpc.GeneratorStub(ch)
        code, details = code_of(lambda: stub.ListEngines(generator_pb2.ListEnginesRequest()))
        assert code == grpc.StatusCode.UNAUTHENTICATED and "only the gateway" in details
        code, _ = code_of(lambda: stub.ListEngines(generator_pb2.ListEnginesRequest(),
                                                   metadata=(("x-lipsync-internal", "guess"),)))
        assert code == grpc.StatusCode.UNAUTHENTICATED
        assert stub.ListEngines(generator_pb2.ListEnginesRequest(),
                                metadata=(("x-lipsync-internal", "internal-xyz"),)).engines


def test_local_mode_needs_no_token(stack):       # the shared test stack runs with AUTH_MODE=local
    with grpc.insecure_channel(stack.addrs["gateway"]) as ch:
        code, _ = code_of(lambda: gateway_pb2_grpc.LipsyncGatewayStub(ch).GetJob(gateway_pb2.GetJobRequest(job_id="zz")))
        assert code != grpc.StatusCode.UNAUTHENTICATED


def test_token_mode_without_tokens_does_not_start(tmp_path):
    with pytest.raises(AuthConfigError, match="AUTH_MODE=local"):
        gateway_tokens("token", "", "")
    with pytest.raises(AuthConfigError, match="cannot be read"):
        gateway_tokens("token", "", str(tmp_path / "missing"))
    assert gateway_tokens("local", "", "") is None
    env = dict(os.environ, AUTH_MODE="token", AUTH_TOKENS="", GATEWAY_PORT="0",
               PYTHONPATH=os.pathsep.join([ROOT, os.path.join(ROOT, "gen")]))
    r = subprocess.run([sys.executable, "-m", "gateway.server"], cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode != 0 and "AUTH_TOKENS" in r.stderr
