"""SubmitBatch: many (face, audio) pairs in one upload, each becoming its own job.

Errors of one item (chunks out of order, too large, an incomplete upload, a full queue) are reported for that
item; the others go on. Bad options or a malformed stream fail the whole call (INVALID_ARGUMENT).
"""
from __future__ import annotations

from lipsync.v1 import gateway_pb2
from lipsync_common.formats.chunks import ChunkError, ChunkWriter
from gateway.jobs import JobStore
from gateway.upload import Failure, invalid, validate_options

MAX_ITEMS = 64
KINDS = {gateway_pb2.MEDIA_KIND_FACE: ("face", "face media"), gateway_pb2.MEDIA_KIND_AUDIO: ("audio", "audio")}


class _Item:
    def __init__(self, jobs: JobStore, max_bytes: int):
        self.error: Failure | None = None
        self.job_id, folder = jobs.new_folder()
        self.files = {k: open(f"{folder}/{name}", "wb") for k, (name, _) in KINDS.items()}
        self.writers = {k: ChunkWriter(label, self.files[k], max_bytes) for k, (_, label) in KINDS.items()}

    def close(self) -> None:
        for f in self.files.values():
            f.close()


async def receive_batch(request_iterator, jobs: JobStore, max_bytes: int) -> gateway_pb2.BatchResponse:
    it = aiter(request_iterator)
    first = await anext(it, None)
    if first is None or first.WhichOneof("payload") != "options":
        raise invalid("the first message must carry the options")
    validate_options(first.options)
    items: dict[int, _Item] = {}
    errors: dict[int, Failure] = {}
    submitted: set[int] = set()
    try:
        async for req in it:
            if req.WhichOneof("payload") != "media":
                raise invalid("options may be sent only once, as the first message")
            n, kind = req.media.item, req.media.kind
            if not 0 <= n < MAX_ITEMS:
                raise invalid(f"item {n} is out of range [0, {MAX_ITEMS - 1}]")
            if kind not in KINDS:
                raise invalid(f"unknown media kind {kind}; use MEDIA_KIND_FACE or MEDIA_KIND_AUDIO")
            if n in errors:
                continue                           # that item already failed: skip the rest of its bytes
            if n not in items:
                try:
                    items[n] = _Item(jobs, max_bytes)
                except Failure as e:               # the job queue is full
                    errors[n] = e
                    continue
            try:
                items[n].writers[kind].add(req.media.chunk.offset, req.media.chunk.data, req.media.chunk.last)
            except ChunkError as e:
                errors[n] = invalid(f"item {n}: {e}")
        out = gateway_pb2.BatchResponse()
        for n in sorted(set(items) | set(errors)):
            item = items.get(n)
            if item is not None:
                item.close()
                if n not in errors and not all(w.done for w in item.writers.values()):
                    missing = " and ".join(w.name for w in item.writers.values() if not w.done)
                    errors[n] = invalid(f"item {n}: the {missing} upload was not complete (send last=true)")
            if n in errors:
                if item is not None:
                    jobs.discard(item.job_id)
                out.items.add(item=n, error=errors[n].message, error_code=errors[n].code.name)
            else:
                out.items.add(item=n, job=jobs.submit(item.job_id, first.options))
                submitted.add(n)
        if not out.items:
            raise invalid("the batch holds no items")
        return out
    except BaseException:   # the call failed as a whole (or was cancelled): keep no half-made item
        for n, item in items.items():
            item.close()
            if n not in submitted:
                jobs.discard(item.job_id)
        raise
