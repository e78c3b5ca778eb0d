"""Receive a client-streaming upload: a header first (the options or a config), then file chunks.

One loop for every service that takes files (the gateway's Lipsync/SubmitJob/SubmitBatch, preprocess Prepare,
evaluator Evaluate/Compare). The caller says what its messages look like and where each chunk goes:

    files = Uploads(ChunkWriter, max_bytes)
    def start(options): ...validate...; files.open("face", "face media", path); return route
    def route(chunk): return "face", chunk          # (key, Chunk), or None to skip the message
    options = await receive(request_iterator, "options", "media", start, files, again="...")
    files.unfinished()  -> names of files whose last chunk never came (the caller words that error)

Every protocol error is an UploadError with the gRPC status name it maps to (INVALID_ARGUMENT, or
RESOURCE_EXHAUSTED for the total size); the servers turn it into the call's status. The chunk writer
(formats/chunks.py ChunkWriter) is passed in: the edge does not import the data formats.
"""
from __future__ import annotations

from typing import Any, Callable, Hashable


class UploadError(Exception):
    """A malformed upload; `code` is the name of the gRPC status it maps to."""

    def __init__(self, message: str, code: str = "INVALID_ARGUMENT", key: Hashable = None):
        super().__init__(message)
        self.message, self.code, self.key = message, code, key


class Uploads:
    """The files of one upload by key: a chunk writer each, a cap per file (max_bytes) and over all of them
    together (max_total, 0 = none)."""

    def __init__(self, writer: Callable, max_bytes: int, max_total: int = 0):
        self.make_writer, self.max_bytes, self.max_total = writer, max_bytes, max_total
        self.writers: dict[Hashable, Any] = {}
        self.paths: dict[Hashable, str] = {}
        self._files: dict[Hashable, Any] = {}
        self.total = 0

    def open(self, key: Hashable, name: str, path: str):
        self._files[key] = open(path, "wb")
        self.paths[key] = path
        self.writers[key] = self.make_writer(name, self._files[key], self.max_bytes)
        return self.writers[key]

    def write(self, key: Hashable, chunk) -> None:
        """chunk: a lipsync.v1.Chunk (offset, data, last)."""
        self.total += len(chunk.data)
        if self.max_total and self.total > self.max_total:
            raise UploadError(f"the files are larger than {self.max_total} bytes together", "RESOURCE_EXHAUSTED", key)
        try:
            self.writers[key].add(chunk.offset, chunk.data, chunk.last)
        except ValueError as e:     # ChunkError: out of order, after the last chunk, over max_bytes
            raise UploadError(str(e), key=key) from None

    @property
    def complete(self) -> bool:
        return all(w.done for w in self.writers.values())

    def unfinished(self, keys=None) -> list[str]:
        """The names of the files (of `keys`, default all) whose last chunk has not come."""
        return [w.name for k, w in self.writers.items() if not w.done and (keys is None or k in keys)]

    def close(self) -> None:
        for f in self._files.values():
            f.close()


async def receive(requests, header: str, body: str, start: Callable[[Any], Callable], files: Uploads, *,
                  again: str, what: str = "", until_complete: bool = False,
                  on_error: Callable[[UploadError], None] | None = None):
    """Read the header (the first message's `header` field), call start(header) -> route, then for every
    following message route(message.<body>) -> (key, chunk) or None, and write the chunk to files[key].

    Returns the header. Reads to the end of the stream, or with until_complete only until every opened file
    has its last chunk. again: the message for a second header (or any message that is not `body`).
    on_error: called with a chunk's UploadError instead of raising it (per-file errors that do not end the
    call). The files are closed on return.
    """
    it = aiter(requests)
    first = await anext(it, None)
    if first is None or first.WhichOneof("payload") != header:
        raise UploadError(f"the first message must carry the {what or header}")
    head = getattr(first, header)
    try:
        route = start(head)
        while not (until_complete and files.complete):
            req = await anext(it, None)
            if req is None:
                break
            if req.WhichOneof("payload") != body:
                raise UploadError(again)
            target = route(getattr(req, body))
            if target is None:
                continue
            try:
                files.write(*target)
            except UploadError as e:
                if on_error is None:
                    raise
                on_error(e)
    finally:
        files.close()
    return head
