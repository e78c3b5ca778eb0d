"""Where benchmark results go on the GPU machine: $OUT (the device tool brings that folder back)."""
from __future__ import annotations

import json
import os


def save_json(name: str, rows) -> str | None:
    """rows as $OUT/name; nothing (None) when OUT is not set. Returns the path written."""
    folder = os.environ.get("OUT")
    if not folder:
        return None
    path = os.path.join(folder, name)
    with open(path, "w") as f:
        json.dump(rows, f, indent=1)
    return path


def save_text(name: str, text: str) -> str | None:
    """text as $OUT/name; nothing (None) when OUT is not set."""
    folder = os.environ.get("OUT")
    if not folder:
        return None
    path = os.path.join(folder, name)
    with open(path, "w") as f:
        f.write(text)
    return path


def report_targets(rows: list, engine: str) -> str:
    """Issues 16's and 18's targets against these rows (tools/targets.py): printed and saved as $OUT/targets.md."""
    from tools import targets

    text = (f"Targets (issues 16 and 18, stated for the musetalk engine on one H200; engine here: {engine})\n\n"
            + targets.markdown(targets.check(rows)))
    print(text, flush=True)
    save_text("targets.md", text)
    return text
