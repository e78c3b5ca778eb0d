"""The generated code in gen/ is exactly what `make proto` makes from protos/ (no drift)."""
import filecmp
import os
import subprocess
import sys

from tests.helpers import ROOT


def test_generated_code_matches_protos(tmp_path):
    env = dict(os.environ, PYTHON=sys.executable)
    subprocess.run([os.path.join(ROOT, "scripts", "gen_protos.sh"), str(tmp_path)], check=True, env=env)
    fresh = tmp_path / "lipsync" / "v1"
    committed = os.path.join(ROOT, "gen", "lipsync", "v1")
    names = sorted(n for n in os.listdir(fresh) if not n.startswith("__pycache__"))
    assert names == sorted(n for n in os.listdir(committed) if n != "__pycache__")
    _, mismatch, errors = filecmp.cmpfiles(fresh, committed, names, shallow=False)
    assert not mismatch and not errors, f"run `make proto`: {mismatch or errors} differ from protos/"


def test_every_message_and_field_is_documented():
    """Each message, field, enum value and rpc in protos/ has a comment on or above its line."""
    import re
    undocumented = []
    folder = os.path.join(ROOT, "protos", "lipsync", "v1")
    for name in os.listdir(folder):
        lines = open(os.path.join(folder, name)).read().splitlines()
        for i, line in enumerate(lines):
            s = line.strip()
            decl = re.match(r"^(message|enum|service|rpc)\s", s) or re.match(r"^[\w.]+( [\w.]+)? \w+ = \d+;", s) \
                or re.match(r"^[A-Z0-9_]+ = \d+;", s)
            if not decl:
                continue
            prev = lines[i - 1].strip() if i else ""
            if "//" in s or prev.startswith("//"):
                continue
            undocumented.append(f"{name}:{i + 1}: {s}")
    assert not undocumented, "\n".join(undocumented)
