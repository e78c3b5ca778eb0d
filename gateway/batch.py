"""SubmitBatch: many (face, audio) pairs in one upload, each becoming its own job.

Errors of one item (chunks out of order, too large, an incomplete upload, a full queue) are reported for that
item; the others go on. Bad options or a malformed stream fail the whole call (INVALID_ARGUMENT).
"""
from __future__ import annotations

from lipsync.v1 import gateway_pb2
from lipsync_common.edge.uploads import UploadError, Uploads, receive as receive_upload
from lipsync_common.formats.chunks import ChunkWriter
from gateway.jobs import JobStore
from gateway.upload import AGAIN, Failure, invalid, upload_failure, validate_options

MAX_ITEMS = 64
KINDS = {gateway_pb2.MEDIA_KIND_FACE: ("face", "face media"), gateway_pb2.MEDIA_KIND_AUDIO: ("audio", "audio")}


class _Batch:
    """The items of one batch upload: a job folder each, their files keyed (item, kind), and per-item errors."""

    def __init__(self, jobs: JobStore, max_bytes: int):
        self.jobs = jobs
        self.files = Uploads(ChunkWriter, max_bytes)
        self.job_ids: dict[int, str] = {}
        self.errors: dict[int, Failure] = {}

    def route(self, media: gateway_pb2.BatchChunk):
        n, kind = media.item, media.kind
        if not 0 <= n < MAX_ITEMS:
            raise UploadError(f"item {n} is out of range [0, {MAX_ITEMS - 1}]")
        if kind not in KINDS:
            raise UploadError(f"unknown media kind {kind}; use MEDIA_KIND_FACE or MEDIA_KIND_AUDIO")
        if n in self.errors:
            return None                            # that item already failed: skip the rest of its bytes
        if n not in self.job_ids:
            try:
                self.job_ids[n], folder = self.jobs.new_folder()
            except Failure as e:                   # the job queue is full
                self.errors[n] = e
                return None
            for k, (name, label) in KINDS.items():
                self.files.open((n, k), label, f"{folder}/{name}")
        return (n, kind), media.chunk

    def chunk_failed(self, e: UploadError) -> None:
        n = e.key[0]
        self.errors[n] = invalid(f"item {n}: {e.message}")

    def result(self, n: int) -> Failure | None:
        """The item's error, its upload being over."""
        if n not in self.errors and n in self.job_ids:
            missing = self.files.unfinished([(n, k) for k in KINDS])
            if missing:
                self.errors[n] = invalid(f"item {n}: the {' and '.join(missing)} upload was not complete "
                                         "(send last=true)")
        return self.errors.get(n)


async def receive_batch(request_iterator, jobs: JobStore, max_bytes: int) -> gateway_pb2.BatchResponse:
    batch = _Batch(jobs, max_bytes)
    submitted: set[int] = set()

    def start(o):
        validate_options(o)
        return batch.route

    try:
        try:
            options = await receive_upload(request_iterator, "options", "media", start, batch.files, again=AGAIN,
                                           on_error=batch.chunk_failed)
        except UploadError as e:
            raise upload_failure(e) from None
        out = gateway_pb2.BatchResponse()
        for n in sorted(set(batch.job_ids) | set(batch.errors)):
            error = batch.result(n)
            if error is not None:
                if n in batch.job_ids:
                    jobs.discard(batch.job_ids[n])
                out.items.add(item=n, error=error.message, error_code=error.code)
            else:
                out.items.add(item=n, job=jobs.submit(batch.job_ids[n], options))
                submitted.add(n)
        if not out.items:
            raise invalid("the batch holds no items")
        return out
    except BaseException:   # the call failed as a whole (or was cancelled): keep no half-made item
        batch.files.close()
        for n, job_id in batch.job_ids.items():
            if n not in submitted:
                jobs.discard(job_id)
        raise
