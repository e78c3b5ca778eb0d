"""Receive a client's upload (options, then face and audio chunks) into two files, validating as it goes."""
from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass

import grpc

from lipsync.v1 import common_pb2, gateway_pb2
from lipsync_common import options
from lipsync_common.formats.chunks import ChunkError, ChunkWriter
from gateway import fetch

class Failure(Exception):
    """A job failure with the gRPC status it maps to."""

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def invalid(message: str) -> Failure:
    return Failure(grpc.StatusCode.INVALID_ARGUMENT, message)


def validate_options(o: common_pb2.LipsyncOptions) -> None:
    try:
        options.check_request(o)
    except options.OptionError as e:
        raise invalid(str(e)) from None


@dataclass(frozen=True)
class UrlPolicy:
    timeout_s: float = 30.0
    allow_loopback: bool = False     # tests only


async def receive(request_iterator, folder: str, max_bytes: int,
                  urls: UrlPolicy = UrlPolicy()) -> tuple[common_pb2.LipsyncOptions, str, str]:
    """Read options + both uploads into folder/face and folder/audio; returns (options, face_path, audio_path).

    An input given as a URL in the options is fetched instead (fetch.py) and must not be uploaded. Stops
    reading as soon as the uploads are complete. Raises Failure(INVALID_ARGUMENT) on any protocol error.
    """
    it = aiter(request_iterator)
    first = await anext(it, None)
    if first is None or first.WhichOneof("payload") != "options":
        raise invalid("the first message must carry the options")
    validate_options(first.options)
    paths = {gateway_pb2.MEDIA_KIND_FACE: os.path.join(folder, "face"),
             gateway_pb2.MEDIA_KIND_AUDIO: os.path.join(folder, "audio")}
    names = {gateway_pb2.MEDIA_KIND_FACE: "face media", gateway_pb2.MEDIA_KIND_AUDIO: "audio"}
    by_url = {k: u for k, u in ((gateway_pb2.MEDIA_KIND_FACE, first.options.face_url),
                                 (gateway_pb2.MEDIA_KIND_AUDIO, first.options.audio_url)) if u}
    files = {k: open(p, "wb") for k, p in paths.items() if k not in by_url}
    try:
        writers = {k: ChunkWriter(names[k], f, max_bytes) for k, f in files.items()}
        while not all(w.done for w in writers.values()):
            req = await anext(it, None)
            if req is None:
                missing = " and ".join(w.name for w in writers.values() if not w.done)
                raise invalid(f"the stream ended before the {missing} upload was complete (send a chunk with last=true)")
            if req.WhichOneof("payload") != "media":
                raise invalid("options may be sent only once, as the first message")
            kind = req.media.kind
            if kind in by_url:
                raise invalid(f"the {names[kind]} is given as a URL: do not upload it too")
            if kind not in writers:
                raise invalid(f"unknown media kind {kind}; use MEDIA_KIND_FACE or MEDIA_KIND_AUDIO")
            try:
                writers[kind].add(req.media.chunk.offset, req.media.chunk.data, req.media.chunk.last)
            except ChunkError as e:
                raise invalid(str(e)) from None
        for kind, w in writers.items():
            if w.size == 0:
                raise invalid(f"the {w.name} is empty (0 bytes)")
    finally:
        for f in files.values():
            f.close()
    for kind, url in by_url.items():
        try:
            await asyncio.to_thread(fetch.fetch, url, paths[kind], max_bytes, urls.timeout_s, urls.allow_loopback)
        except fetch.TooLarge as e:
            raise Failure(grpc.StatusCode.RESOURCE_EXHAUSTED, f"{names[kind]}: {e}") from None
        except fetch.FetchError as e:
            raise invalid(f"{names[kind]}: {e}") from None
    return first.options, paths[gateway_pb2.MEDIA_KIND_FACE], paths[gateway_pb2.MEDIA_KIND_AUDIO]
