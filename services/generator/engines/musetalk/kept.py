"""Tensors loaded from files, kept in memory by recent use up to a byte budget: a source's reference latents are
read from its cache file once, not by every request (in the side thread that every request's start waits on; a
10-minute source's are ~240 MB)."""
from __future__ import annotations

import collections
import os
import threading


class KeptFiles:
    def __init__(self):
        self._kept: collections.OrderedDict = collections.OrderedDict()   # (path, mtime_ns, size) -> tensor
        self._lock = threading.Lock()

    @staticmethod
    def _key(path: str) -> tuple:
        st = os.stat(path)
        return path, st.st_mtime_ns, st.st_size

    def get(self, path: str):
        """The tensor kept for this file as it is now (a file written again is a new key), or None."""
        key = self._key(path)
        with self._lock:
            hit = self._kept.get(key)
            if hit is not None:
                self._kept.move_to_end(key)
            return hit

    def keep(self, path: str, tensor, budget_bytes: float):
        """Keep tensor (as read from path, on its device), the most recently used first, evicting the oldest
        over budget_bytes; one larger than the budget is not kept. Returns tensor."""
        if tensor.numel() * tensor.element_size() > budget_bytes:
            return tensor
        key = self._key(path)
        with self._lock:
            self._kept[key] = tensor
            while sum(t.numel() * t.element_size() for t in self._kept.values()) > budget_bytes:
                self._kept.popitem(last=False)
        return tensor
