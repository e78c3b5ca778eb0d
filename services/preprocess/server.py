"""Preprocess gRPC edge: validation, status codes, streaming; the work is in prepare.py."""
from __future__ import annotations

import asyncio
import dataclasses
from functools import partial
import hashlib
import logging
import os
import tempfile
import threading

import grpc
import numpy as np

from lipsync.v1 import common_pb2, preprocess_pb2, preprocess_pb2_grpc
from lipsync_common import options
from lipsync_common.cores import usable_cores
from lipsync_common.edge import calls
from lipsync_common.edge import server as boot
from lipsync_common.formats import media
from lipsync_common.edge.metrics import FRAMES
from lipsync_common.edge.uploads import UploadError, Uploads, receive
from lipsync_common.formats.chunks import ChunkWriter
from lipsync_common.formats.source_cache import SourceCache, SourceNotFound
from services.preprocess import face_parsing
from services.preprocess.config import PreprocessConfig
from lipsync_common.faces.landmarks import Landmarker
from services.preprocess.prepare import Cancelled, NoFaceError, PrepareOptions, prepare, source_id
from services.preprocess.preview import preview

log = logging.getLogger("preprocess")


def prepare_options(msg: preprocess_pb2.PrepareOptions) -> PrepareOptions:
    """The request's face options checked against the options table (raises OptionError, a ValueError)."""
    options.check_face_options(msg)
    table = options.OPTIONS
    return PrepareOptions(
        model_version=options.model_version(msg.model_version), bbox_shift=msg.bbox_shift,
        extra_margin=msg.extra_margin if msg.HasField("extra_margin") else int(table["extra_margin"].default),
        face_index=msg.face_index if msg.HasField("face_index") else int(table["face_index"].default),
        smoothing=msg.smoothing if msg.HasField("smoothing") else True,
        face_hint=options.face_hint(msg.face_hint) if msg.HasField("face_hint") else None,
        parsing_mode=options.parsing_mode(msg.parsing_mode),
        left_cheek_width=options.optional_int(msg, "left_cheek_width"),
        right_cheek_width=options.optional_int(msg, "right_cheek_width"))


class PreprocessServicer(preprocess_pb2_grpc.PreprocessServicer):
    def __init__(self, cfg: PreprocessConfig):
        self.cfg = cfg
        self.cache = SourceCache(cfg.cache_dir, cfg.cache_max_bytes)
        self.cache.clean_stale_temp()
        self.landmarker: Landmarker | None = None
        self.parser = None     # BiSeNet face parsing, when its weights are in MODELS_DIR
        self.cpu = asyncio.Semaphore(usable_cores())     # the pod's CPU limit, not its node's cores

    def warmup(self) -> None:
        if not face_parsing.missing_files(self.cfg.models_dir):
            self.parser = face_parsing.FaceParser(self.cfg.models_dir)
        boot.log_event(log, "blend mask", kind="bisenet" if self.parser else "landmarks",
                       models_dir=os.path.abspath(self.cfg.models_dir))
        self.landmarker = Landmarker()
        with self.landmarker.session(static=True) as s:
            s.process(np.zeros((64, 64, 3), np.uint8))

    async def _receive(self, request_iterator, path: str, fail) -> tuple[PrepareOptions, str]:
        """The options, then the face media into `path`; returns (options, the media's sha256)."""
        files = Uploads(ChunkWriter, self.cfg.max_upload_bytes)
        sha = hashlib.sha256()
        opts = None

        def start(msg: preprocess_pb2.PrepareOptions):
            nonlocal opts
            opts = self._options(msg)
            files.open("face", "face media", path)
            return route

        def route(chunk: common_pb2.Chunk):
            sha.update(chunk.data)
            return "face", chunk

        try:
            await receive(request_iterator, "options", "media", start, files,
                          again="options may be sent only once, first")
        except UploadError as e:
            await fail(calls.status(e.code), e.message)
        except ValueError as e:     # an option out of the table's range (OptionError)
            await fail(grpc.StatusCode.INVALID_ARGUMENT, str(e))
        writer = files.writers["face"]
        if not writer.done:
            await fail(grpc.StatusCode.INVALID_ARGUMENT,
                       "the face media stream ended before its last chunk (last=true)")
        if writer.size == 0:
            await fail(grpc.StatusCode.INVALID_ARGUMENT, "the face media is empty (0 bytes)")
        return opts, sha.hexdigest()

    async def Prepare(self, request_iterator, context):
        fail = partial(calls.abort, context, request_iterator)  # drains the upload, then ends the call
        fd, path = tempfile.mkstemp(prefix="prep-", dir=self.cfg.tmp_dir or None)
        os.close(fd)
        try:
            opts, sha = await self._receive(request_iterator, path, fail)
            loop = asyncio.get_running_loop()
            events: asyncio.Queue = asyncio.Queue()

            def progress(done: int, total: int) -> None:
                if done % 10 == 0:
                    loop.call_soon_threadsafe(events.put_nowait, (done, total))

            stop = threading.Event()     # set when the call ends: the work stops at its next frame
            async with self.cpu:
                task = asyncio.ensure_future(asyncio.to_thread(
                    prepare, path, sha, opts, self.cache, self.landmarker, self.cfg.max_pixels,
                    self.cfg.max_frames, progress, self.parser, stop.is_set))
                task.add_done_callback(_quiet)
                try:
                    while not task.done():
                        getter = asyncio.ensure_future(events.get())
                        await asyncio.wait({task, getter}, return_when=asyncio.FIRST_COMPLETED)
                        if getter.done():
                            done, total = getter.result()
                            yield preprocess_pb2.PrepareResponse(progress=common_pb2.Progress(
                                stage=common_pb2.STAGE_PREPROCESS, done=done, total=total))
                        else:
                            getter.cancel()
                finally:
                    stop.set()
                try:
                    meta, cached = task.result()
                except media.MediaError as e:
                    await fail(grpc.StatusCode.INVALID_ARGUMENT, str(e))
                except NoFaceError as e:
                    await fail(grpc.StatusCode.FAILED_PRECONDITION, str(e))
            boot.log_event(log, "prepared", source_id=meta.source_id, frames=meta.num_frames, cached=cached)
            if not cached:
                FRAMES.labels("preprocess", "prepare").inc(meta.num_frames)
            yield preprocess_pb2.PrepareResponse(prepared=prepared_pb(meta, cached))
        finally:
            if os.path.exists(path):
                os.remove(path)


    async def Lookup(self, request, context):
        """The prepared source for a media hash and options, without the media: NOT_FOUND when not cached."""
        if len(request.media_sha256) != 64 or any(c not in "0123456789abcdef" for c in request.media_sha256):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "media_sha256 must be 64 lowercase hex digits")
        try:
            opts = self._options(request.options)
        except ValueError as e:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(e))
        sid = source_id(request.media_sha256, opts)
        try:
            entry = await asyncio.to_thread(self.cache.get, sid)
        except SourceNotFound:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no prepared source for this media and options ({sid})")
        return prepared_pb(entry.meta, True)

    def _options(self, msg: preprocess_pb2.PrepareOptions) -> PrepareOptions:
        """The prepare options of a request, with this server's mask (BiSeNet when its weights are here)."""
        return dataclasses.replace(prepare_options(msg), mask="bisenet" if self.parser is not None else "landmarks")

    async def Preview(self, request, context):
        try:
            entry = self.cache.get(request.source_id)
        except SourceNotFound as e:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(e))
        try:
            p = await asyncio.to_thread(preview, entry)
        except ValueError as e:      # no frame with a face (prepare would not have stored it)
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(e))
        x1, y1, x2, y2 = p.box
        return common_pb2.PreviewResult(
            png=p.png, frame=p.frame, crop_box=common_pb2.FaceBox(x1=x1, y1=y1, x2=x2, y2=y2),
            bbox_shift_range=common_pb2.BboxShiftRange(min=p.bbox_shift_range[0], max=p.bbox_shift_range[1]),
            source_id=request.source_id, cached=True)


def _quiet(task: asyncio.Future) -> None:
    """A worker's outcome nobody waits for any more (the call was cancelled): read it, so it is not logged as
    never retrieved; a Cancelled one is the expected end."""
    if not task.cancelled() and isinstance(task.exception(), Cancelled):
        boot.log_event(log, "prepare stopped", reason="the call was cancelled")


def prepared_pb(meta, cached: bool) -> preprocess_pb2.PreparedSource:
    return preprocess_pb2.PreparedSource(
        source_id=meta.source_id, num_frames=meta.num_frames, fps=meta.fps, width=meta.width, height=meta.height,
        is_image=meta.is_image, frames_with_face=meta.frames_with_face,
        bbox_shift_range=common_pb2.BboxShiftRange(min=meta.bbox_shift_range[0], max=meta.bbox_shift_range[1]),
        cached=cached)


def main() -> None:
    cfg = PreprocessConfig.from_env()
    boot.setup_logging("preprocess", cfg.edge.log_level)
    servicer = PreprocessServicer(cfg)
    boot.run_internal("preprocess", cfg.listen, cfg.edge, preprocess_pb2.DESCRIPTOR.services_by_name["Preprocess"],
                      lambda s: preprocess_pb2_grpc.add_PreprocessServicer_to_server(servicer, s), warmup=servicer.warmup)


if __name__ == "__main__":
    main()
