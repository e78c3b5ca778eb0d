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
