import os
import time

import grpc
import pytest

from lipsync.v1 import gateway_pb2_grpc
from lipsync_client import LipsyncClient
from tests import helpers
from tools.stack import Stack


def find_shared(name: str) -> str:
    """The absolute path of ../shared/data/NAME, or a skip that says what is missing and where it was looked for."""
    path = os.path.join(helpers.SHARED, name)
    if not os.path.isfile(path):
        pytest.skip(f"needs ../shared/data/{name} (not found at {path})")
    return path


@pytest.fixture(scope="session")
def shared_file():
    """Factory for media from ../shared/data (absent on a fresh clone): shared_file("eng.wav") -> path, else skip.

    The one way tests reach ../shared; session-scoped so fixtures of any scope can request it."""
    return find_shared


@pytest.fixture(scope="session")
def stack(tmp_path_factory):
    """The four services as separate processes on 127.0.0.1 (ephemeral ports), as `make up` runs them."""
    folder = tmp_path_factory.mktemp("stack")
    tmp = folder / "tmp"
    tmp.mkdir()
    s = Stack.start(str(folder), env={"TMP_DIR": str(tmp), "MODELS_DIR": str(folder / "models"),
                                      "EVAL_FID_FRAMES": "12"}, metrics=True)
    s.tmp = str(tmp)
    yield s
    s.stop()
    for name, proc in s.procs.items():
        assert proc.returncode == 0, f"{name} did not stop cleanly (code {proc.returncode})"


@pytest.fixture
def client(stack):
    with LipsyncClient(stack.addrs["gateway"]) as c:
        yield c


@pytest.fixture
def gateway_stub(stack):
    with grpc.insecure_channel(stack.addrs["gateway"]) as ch:
        yield gateway_pb2_grpc.LipsyncGatewayStub(ch)


@pytest.fixture
def assert_healthy(stack):
    """After the test: every service still runs and no temporary upload is left."""
    yield
    deadline = time.time() + 10   # a cancelled call cleans up asynchronously
    while os.listdir(stack.tmp) and time.time() < deadline:
        time.sleep(0.1)
    for name, proc in stack.procs.items():
        assert proc.poll() is None, f"{name} crashed"
    assert os.listdir(stack.tmp) == [], f"temp files left: {os.listdir(stack.tmp)}"
