"""Renders running now on this machine, counted across processes: each running render holds an exclusive lock on a
file of its own in one folder, and the count is the files whose lock is held. The render worker processes of one box
(`make up`'s RENDER_WORKERS) share the temp folder, so they count each other; a Kubernetes pod has its own /tmp, so
there the count is the pod's. A process that dies (kill -9 included) loses its locks with it: its files are seen as
stale and removed by the next count. No gRPC here.
"""
from __future__ import annotations

import contextlib
import fcntl
import itertools
import os
import tempfile
from typing import Iterator

_ids = itertools.count()


def default_folder() -> str:
    return os.path.join(tempfile.gettempdir(), f"lipsync-renders-{os.getuid()}")


class ActiveRenders:
    def __init__(self, folder: str | None = None):
        self.folder = folder or default_folder()
        os.makedirs(self.folder, exist_ok=True)

    @contextlib.contextmanager
    def running(self) -> Iterator[None]:
        """Counted while inside. The file is locked before it gets its counted name (a rename keeps the lock), so a
        count never sees it unlocked and takes it for stale."""
        path = os.path.join(self.folder, f"{os.getpid()}-{next(_ids)}.lock")
        fd = os.open(path + ".new", os.O_CREAT | os.O_WRONLY, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            os.rename(path + ".new", path)
            yield
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            os.close(fd)

    def count(self) -> int:
        """Renders running now (a caller inside running() counts itself); stale files are removed."""
        n = 0
        for name in os.listdir(self.folder):
            if not name.endswith(".lock"):
                continue
            path = os.path.join(self.folder, name)
            try:
                fd = os.open(path, os.O_RDONLY)
            except FileNotFoundError:       # its render just ended
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                n += 1
            else:                           # nobody holds it: its process died
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
            finally:
                os.close(fd)
        return n
