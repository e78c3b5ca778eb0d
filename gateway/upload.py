"""Receive a client's upload (options, then face and audio chunks) into two files, validating as it goes.

Imports no gRPC: a Failure carries the name of its status."""
from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass

from lipsync.v1 import common_pb2, gateway_pb2
from lipsync_common import options
from lipsync_common.edge.uploads import UploadError, Uploads, receive as receive_upload
from lipsync_common.formats.chunks import ChunkWriter
from gateway import fetch


class Failure(Exception):
    """A job failure with the name of the gRPC status it maps to ("INVALID_ARGUMENT", ...; gateway/server.py
    turns it into the call's status)."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def invalid(message: str) -> Failure:
    return Failure("INVALID_ARGUMENT", message)


def validate_options(o: common_pb2.LipsyncOptions) -> None:
    try:
        options.check_request(o)
    except options.OptionError as e:
        raise invalid(str(e)) from None


@dataclass(frozen=True)
class UrlPolicy:
    timeout_s: float = 30.0
    allow_loopback: bool = False     # tests only


FACE, AUDIO = gateway_pb2.MEDIA_KIND_FACE, gateway_pb2.MEDIA_KIND_AUDIO
NAMES = {FACE: "face media", AUDIO: "audio"}
AGAIN = "options may be sent only once, as the first message"


def upload_failure(e: UploadError) -> Failure:
    return Failure(e.code, e.message)


async def receive(request_iterator, folder: str, max_bytes: int, urls: UrlPolicy = UrlPolicy(),
                  audio: bool = True) -> tuple[common_pb2.LipsyncOptions, str, str]:
    """Read options + both uploads into folder/face and folder/audio; returns (options, face_path, audio_path).
    audio=False (Preview): the face only; an audio chunk or URL is an error.

    An input given as a URL in the options is fetched instead (fetch.py) and must not be uploaded. Stops
    reading as soon as the uploads are complete. Raises Failure(INVALID_ARGUMENT) on any protocol error.
    """
    paths = {FACE: os.path.join(folder, "face"), AUDIO: os.path.join(folder, "audio")}
    files = Uploads(ChunkWriter, max_bytes)
    by_url: dict[int, str] = {}

    kinds = (FACE, AUDIO) if audio else (FACE,)

    def start(o: common_pb2.LipsyncOptions):
        validate_options(o)
        if not audio and o.audio_url:
            raise UploadError("a preview takes the face only: leave audio_url empty")
        by_url.update({k: u for k, u in ((FACE, o.face_url), (AUDIO, o.audio_url)) if u})
        for kind in kinds:
            if kind not in by_url:
                files.open(kind, NAMES[kind], paths[kind])
        return route

    def route(media: gateway_pb2.MediaChunk):
        if media.kind in by_url:
            raise UploadError(f"the {NAMES[media.kind]} is given as a URL: do not upload it too")
        if media.kind == AUDIO and not audio:
            raise UploadError("a preview takes the face only: send no audio chunks")
        if media.kind not in files.writers:
            raise UploadError(f"unknown media kind {media.kind}; use MEDIA_KIND_FACE or MEDIA_KIND_AUDIO")
        return media.kind, media.chunk

    try:
        options = await receive_upload(request_iterator, "options", "media", start, files, again=AGAIN,
                                       until_complete=True)
    except UploadError as e:
        raise upload_failure(e) from None
    missing = files.unfinished()
    if missing:
        raise invalid(f"the stream ended before the {' and '.join(missing)} upload was complete "
                      "(send a chunk with last=true)")
    for w in files.writers.values():
        if w.size == 0:
            raise invalid(f"the {w.name} is empty (0 bytes)")
    for kind, url in by_url.items():
        try:
            await asyncio.to_thread(fetch.fetch, url, paths[kind], max_bytes, urls.timeout_s, urls.allow_loopback)
        except fetch.TooLarge as e:
            raise Failure("RESOURCE_EXHAUSTED", f"{NAMES[kind]}: {e}") from None
        except fetch.FetchError as e:
            raise invalid(f"{NAMES[kind]}: {e}") from None
    return options, paths[FACE], paths[AUDIO]
