"""The house's rules, checked on the source: the shared package has no import cycle, its gRPC edge and its data
formats do not import each other, formats and faces import no gRPC, and rooms share code only through it."""
import ast
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROOMS = {"gateway": "gateway", "preprocess": "services/preprocess", "generator": "services/generator",
         "render": "services/render", "evaluator": "services/evaluator"}


def imports(path: str) -> set[str]:
    """Every module a file imports (absolute names; relative imports are not used in this project)."""
    out = set()
    for node in ast.walk(ast.parse(open(path).read())):
        if isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
            out.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return out


def py_files(folder: str):
    for root, _, files in os.walk(os.path.join(ROOT, folder)):
        for f in files:
            if f.endswith(".py"):
                yield os.path.join(root, f)


def module_name(path: str) -> str:
    rel = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
    return rel[:-len(".__init__")] if rel.endswith(".__init__") else rel


def test_shared_package_has_no_cycle_and_its_halves_stay_apart():
    graph = {}
    for path in py_files("lipsync_common"):
        name = module_name(path)
        graph[name] = {m for m in imports(path) if m.startswith("lipsync_common.") and
                       os.path.exists(os.path.join(ROOT, *m.split(".")) + ".py")}
        part = name.split(".")[1] if name.count(".") >= 1 else ""
        if part in ("formats", "faces"):
            assert not any(m == "grpc" or m.startswith("grpc.") or m.startswith("lipsync_common.edge")
                           for m in imports(path)), f"{name} imports gRPC or the edge"
        if part == "edge":
            assert not any(m.startswith(("lipsync_common.formats", "lipsync_common.faces")) for m in imports(path)), \
                f"{name} imports the data formats"

    def visit(node, stack):
        assert node not in stack, f"import cycle: {' -> '.join(stack[stack.index(node):] + [node])}"
        for nxt in graph.get(node, ()):
            visit(nxt, stack + [node])
    for node in graph:
        visit(node, [])


@pytest.mark.parametrize("room", sorted(ROOMS))
def test_rooms_share_code_only_through_the_shared_package(room):
    others = [f"services.{r}" if ROOMS[r].startswith("services/") else r for r in ROOMS if r != room]
    for path in py_files(ROOMS[room]):
        bad = {m for m in imports(path) if any(m == o or m.startswith(o + ".") for o in others)}
        assert not bad, f"{os.path.relpath(path, ROOT)} imports another room: {sorted(bad)}"
