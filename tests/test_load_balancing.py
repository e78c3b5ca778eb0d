"""Two real generator processes behind one DNS name: the channel options the gateway uses (round_robin over every
address the name resolves to, as with a headless Kubernetes Service) spread calls over both."""
import os
import subprocess
import sys
import urllib.request

import grpc

from lipsync.v1 import generator_pb2, generator_pb2_grpc
from lipsync_common.edge.server import CLIENT_OPTIONS
from tests.dns_stub import DnsStub
from tools.stack import ROOT, _free_port, wait_serving

NAME = "generator-headless.lipsync.test"


def count(metrics_port: int) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).read().decode()
    key = 'lipsync_rpc_total{code="OK",method="ListEngines",service="generator"}'
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(key))


def test_calls_spread_over_both_replicas(tmp_path):
    port = _free_port()
    dns = DnsStub({NAME: ["127.0.0.1", "127.0.0.2"]})
    procs, metrics = [], []
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, os.path.join(ROOT, "gen")]),
               CACHE_DIR=str(tmp_path / "cache"), MODELS_DIR=str(tmp_path / "models"), GENERATOR_PORT=str(port))
    try:
        for host in ("127.0.0.1", "127.0.0.2"):
            metrics.append(_free_port())
            procs.append(subprocess.Popen([sys.executable, "-m", "services.generator.server"], cwd=ROOT,
                                          env=dict(env, GENERATOR_HOST=host, METRICS_PORT=str(metrics[-1])),
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        for host, proc in zip(("127.0.0.1", "127.0.0.2"), procs):
            wait_serving(f"{host}:{port}", 60, proc)
        target = f"dns://127.0.0.1:{dns.port}/{NAME}:{port}"
        with grpc.insecure_channel(target, options=CLIENT_OPTIONS) as ch:
            stub = generator_pb2_grpc.GeneratorStub(ch)
            for _ in range(20):
                stub.ListEngines(generator_pb2.ListEnginesRequest(), timeout=10)
        a, b = count(metrics[0]), count(metrics[1])
        assert a + b == 20 and a >= 5 and b >= 5, (a, b)
        assert (NAME, 1) in dns.queries            # the name really went through DNS
    finally:
        for p in procs:
            p.terminate()
            p.wait(30)
        dns.close()
