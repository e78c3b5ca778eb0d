"""Run the services locally on 127.0.0.1 as separate processes (what `make up` / `make down` do).

    python -m tools.stack up      # start (fixed ports 50051-50055 unless *_PORT are set), wait until SERVING
                                  # RENDER_WORKERS=N: N render processes on 50055.. behind the gateway
                                  # and the web page on 127.0.0.1:7860 (WEB_PORT) when .venv-web exists
    python -m tools.stack down    # SIGTERM, wait for the drain
Tests use `Stack.start(folder)` with ephemeral ports.
"""
from __future__ import annotations

import glob
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SERVICES = [("preprocess", "services.preprocess.server"), ("generator", "services.generator.server"),
            ("render", "services.render.server"), ("evaluator", "services.evaluator.server"),
            ("gateway", "gateway.server")]


def render_workers() -> int:
    """Render worker processes `make up` and the benchmarks start (RENDER_WORKERS, default 1): rendering is
    CPU-bound and each process is held to one core's worth of Python, so a many-core box runs several."""
    n = int(os.environ.get("RENDER_WORKERS", "1"))
    if n < 1:
        raise ValueError(f"RENDER_WORKERS must be >= 1, not {n}")
    return n


def _instances(services: tuple[str, ...] | None, workers: int) -> list[tuple[str, str, str]]:
    """(instance name, module, settings prefix) of every process to start, in start order."""
    out = []
    for name, module in SERVICES:
        if services is not None and name not in services:
            continue
        count = workers if name == "render" else 1
        out += [(name if k == 0 else f"{name}-{k + 1}", module, name.upper()) for k in range(count)]
    return out


def wait_serving(addr: str, timeout: float, proc: subprocess.Popen | None = None) -> None:
    deadline = time.time() + timeout
    with grpc.insecure_channel(addr) as ch:
        stub = health_pb2_grpc.HealthStub(ch)
        while time.time() < deadline:
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"service at {addr} exited with code {proc.returncode}")
            try:
                if stub.Check(health_pb2.HealthCheckRequest(), timeout=1).status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.1)
    raise TimeoutError(f"service at {addr} not SERVING after {timeout:.0f} s")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _read_port(path: str, proc: subprocess.Popen, timeout: float) -> int:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if os.path.exists(path):
            return int(open(path).read())
        if proc.poll() is not None:
            raise RuntimeError(f"service exited with code {proc.returncode} before binding (see its log)")
        time.sleep(0.05)
    raise TimeoutError(f"no port written to {path}")


@dataclass
class Stack:
    folder: str
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    addrs: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, int] = field(default_factory=dict)   # name -> Prometheus port, when asked for
    launch: dict[str, tuple] = field(default_factory=dict)  # name -> (argv, env, log path), for restart()

    @classmethod
    def start(cls, folder: str, env: dict[str, str] | None = None, ports: dict[str, int] | None = None,
              detach: bool = False, timeout: float = 120.0, metrics: bool = False,
              services: tuple[str, ...] | None = None, render_workers: int = 1,
              external: dict[str, str] | None = None) -> "Stack":
        """services: the names to start (default all); the gateway gets the address of each one started.
        render_workers: render processes (named render, render-2, ...), all behind the gateway's RENDER_ADDR.
        external: addresses of services running elsewhere, given to the gateway as if started here."""
        ports = ports or {}
        stack = cls(folder)
        stack.addrs.update(external or {})
        run, logs = os.path.join(folder, "run"), os.path.join(folder, "log")
        os.makedirs(run, exist_ok=True)
        os.makedirs(logs, exist_ok=True)
        base = dict(os.environ)
        base.update({"CACHE_DIR": os.path.join(folder, "cache"), "RESULTS_DIR": os.path.join(folder, "results"),
                     "PYTHONUNBUFFERED": "1"})
        base.setdefault("AUTH_MODE", "local")     # local development: no tokens, unless asked for
        base["PYTHONPATH"] = os.pathsep.join([ROOT, os.path.join(ROOT, "gen"), base.get("PYTHONPATH", "")])
        base.update(env or {})
        try:
            for name, module, upper in _instances(services, render_workers):
                port_file = os.path.join(run, f"{name}.port")
                if os.path.exists(port_file):
                    os.remove(port_file)
                penv = dict(base)
                penv[f"{upper}_PORT"] = str(ports.get(name, 0))
                penv[f"{upper}_PORT_FILE"] = port_file
                if metrics:
                    stack.metrics[name] = _free_port()
                    penv["METRICS_PORT"] = str(stack.metrics[name])
                if name == "gateway":
                    penv["PREPROCESS_ADDR"] = stack.addrs["preprocess"]
                    penv["GENERATOR_ADDR"] = stack.addrs["generator"]
                    penv["EVALUATOR_ADDR"] = stack.addrs.get("evaluator", "")
                    renders = [a for n, a in stack.addrs.items() if n.split("-")[0] == "render"]
                    if renders:
                        penv["RENDER_ADDR"] = renders[0] if len(renders) == 1 else "ipv4:" + ",".join(renders)
                argv = [sys.executable, "-m", module]
                stack.launch[name] = (argv, penv, os.path.join(logs, f"{name}.log"), detach)
                with open(os.path.join(logs, f"{name}.log"), "ab") as log:
                    proc = subprocess.Popen(argv, cwd=ROOT, env=penv, stdout=log,
                                            stderr=subprocess.STDOUT, start_new_session=detach)
                stack.procs[name] = proc
                with open(os.path.join(run, f"{name}.pid"), "w") as f:
                    f.write(str(proc.pid))
                stack.addrs[name] = f"127.0.0.1:{_read_port(port_file, proc, timeout)}"
            for name, proc in stack.procs.items():
                wait_serving(stack.addrs[name], timeout, proc)
        except BaseException:
            stack.stop()
            raise
        return stack

    def restart(self, name: str, timeout: float = 120.0) -> None:
        """Start a service again on its old address (after it died or was killed); waits until SERVING."""
        argv, penv, log_path, detach = self.launch[name]
        penv = dict(penv, **{f"{name.split('-')[0].upper()}_PORT": self.addrs[name].rsplit(":", 1)[1]})
        with open(log_path, "ab") as log:
            self.procs[name] = subprocess.Popen(argv, cwd=ROOT, env=penv, stdout=log, stderr=subprocess.STDOUT,
                                                start_new_session=detach)
        wait_serving(self.addrs[name], timeout, self.procs[name])

    def restart_with(self, spec: str, timeout: float = 400.0) -> str:
        """"render:KEY=VALUE" (or "render:K1=V1+K2=V2"): every process of that service (every render worker for
        "render") stopped and started again with the settings added to its environment; returns what was set."""
        name, setting = spec.split(":", 1)
        added = dict(part.split("=", 1) for part in setting.split("+"))
        names = [n for n in self.procs if n.split("-")[0] == name]
        if not names:
            raise ValueError(f"no {name} in this stack")
        for n in names:
            self.procs[n].send_signal(signal.SIGTERM)
        for n in names:
            self.procs[n].wait(60)
        for n in names:
            argv, penv, log, detach = self.launch[n]
            self.launch[n] = (argv, dict(penv, **added), log, detach)
            self.restart(n, timeout=timeout)
        return setting

    def profile(self, seconds: float, names: tuple[str, ...] = ("generator", "gateway", "render")) -> list:
        """py-spy (when installed) records those services for `seconds`, every thread, idle samples too, as
        collapsed stacks into $OUT/spy-NAME.txt; returns the recorders (wait on them). Nothing without py-spy or
        $OUT."""
        import shutil
        spy = shutil.which("py-spy") or ("/tmp/site/bin/py-spy" if os.path.exists("/tmp/site/bin/py-spy") else None)
        if spy is None or not os.environ.get("OUT"):
            return []
        procs = []
        for name in names:
            if name in self.procs:
                out = os.path.join(os.environ["OUT"], f"spy-{name}.txt")
                procs.append(subprocess.Popen([spy, "record", "-p", str(self.procs[name].pid), "-d", str(int(seconds)),
                                               "-r", "50", "--threads", "--idle", "-f", "raw", "-o", out,
                                               "--nonblocking"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        return procs

    def stop(self, timeout: float = 30.0) -> None:
        for proc in reversed(list(self.procs.values())):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _down(folder: str) -> None:
    run = os.path.join(folder, "run")
    pids = []
    # the web page first (it calls the gateway), then the gateway (it drains its streams), then the rest
    order = {"web.pid": 0, "gateway.pid": 1}
    for path in sorted(glob.glob(os.path.join(run, "*.pid")), key=lambda p: order.get(os.path.basename(p), 2)):
        if os.path.exists(path):
            pid = int(open(path).read())
            try:
                os.kill(pid, signal.SIGTERM)
                pids.append(pid)
            except ProcessLookupError:
                pass
            os.remove(path)
    deadline = time.time() + 40
    for pid in pids:
        while time.time() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
    print(f"stopped {len(pids)} service(s)")


def start_web(folder: str, gateway: str) -> str | None:
    """The web page (services/web) in its own environment (.venv-web: Gradio wants numpy 2, the services pin
    numpy < 2), detached like the services; its pid goes with theirs for `down`. None when that environment is
    missing."""
    python = os.environ.get("WEB_PYTHON") or os.path.join(ROOT, ".venv-web", "bin", "python")
    if not os.path.isfile(python):
        print("web page: not started (no .venv-web; `make setup-web` makes it)")
        return None
    port = int(os.environ.get("WEB_PORT", 7860))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, os.path.join(ROOT, "gen")]), GATEWAY_ADDR=gateway,
               WEB_PORT=str(port), GRADIO_ANALYTICS_ENABLED="False")
    env.setdefault("AUTH_MODE", "local")     # as the services `up` starts: no tokens unless asked for
    with open(os.path.join(folder, "log", "web.log"), "ab") as log:
        proc = subprocess.Popen([python, "-m", "services.web.server"], cwd=ROOT, env=env, stdout=log, stderr=log,
                                start_new_session=True)
    with open(os.path.join(folder, "run", "web.pid"), "w") as f:
        f.write(str(proc.pid))
    return f"http://127.0.0.1:{port}/"


def main() -> None:
    cmd = sys.argv[1] if len(sys.argv) > 1 else "up"
    folder = os.environ.get("VAR_DIR", os.path.join(ROOT, "var"))
    if cmd == "up":
        _down(folder)
        ports = {"gateway": int(os.environ.get("GATEWAY_PORT", 50051)),
                 "preprocess": int(os.environ.get("PREPROCESS_PORT", 50052)),
                 "generator": int(os.environ.get("GENERATOR_PORT", 50053)),
                 "evaluator": int(os.environ.get("EVALUATOR_PORT", 50054))}
        workers = render_workers()
        first = int(os.environ.get("RENDER_PORT", 50055))
        ports.update({name: first + k for k, (name, _, _) in enumerate(_instances(("render",), workers))})
        stack = Stack.start(folder, ports=ports, detach=True, render_workers=workers)
        for name, addr in stack.addrs.items():
            print(f"{name:<11} {addr}  (log: {os.path.join(folder, 'log', name + '.log')})")
        url = start_web(folder, stack.addrs["gateway"])
        if url:
            print(f"{'web':<11} {url}  (log: {os.path.join(folder, 'log', 'web.log')}; ready in a few seconds)")
    elif cmd == "down":
        _down(folder)
    else:
        raise SystemExit("usage: python -m tools.stack up|down")


if __name__ == "__main__":
    main()
