"""Blocking client for lipsync.v1.LipsyncGateway.

    from lipsync_client import LipsyncClient
    summary = LipsyncClient("127.0.0.1:50051").lipsync("face.mp4", "speech.wav", "out.mp4")
"""
from __future__ import annotations

import os
from typing import Callable, Iterator

import grpc

from lipsync.v1 import common_pb2, evaluator_pb2, gateway_pb2, gateway_pb2_grpc
from lipsync_common.formats.chunks import file_chunks

CHUNK_BYTES = 1024 * 1024
OPTIONS = [("grpc.max_send_message_length", 4 * 1024 * 1024),
           ("grpc.max_receive_message_length", 4 * 1024 * 1024)]


class LipsyncError(RuntimeError):
    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = message


def _check_inputs(*paths: str) -> None:
    for path in paths:
        if not os.path.isfile(path):
            raise FileNotFoundError(f"no such file: {path}")


def upload_requests(face_path: str, audio_path: str | None,
                    options: common_pb2.LipsyncOptions) -> Iterator[gateway_pb2.LipsyncRequest]:
    """options, then the face's chunks, then the audio's (none for Preview)."""
    yield gateway_pb2.LipsyncRequest(options=options)
    files = [(gateway_pb2.MEDIA_KIND_FACE, face_path)]
    if audio_path is not None:
        files.append((gateway_pb2.MEDIA_KIND_AUDIO, audio_path))
    for kind, path in files:
        for offset, data, last in file_chunks(path, CHUNK_BYTES):
            yield gateway_pb2.LipsyncRequest(media=gateway_pb2.MediaChunk(
                kind=kind, chunk=common_pb2.Chunk(offset=offset, data=data, last=last)))

def evaluate_requests(files: dict[str, str], report_html: bool) -> Iterator[evaluator_pb2.EvaluateRequest]:
    """config, then each file's chunks under its role ("source", "generated", "audio", "model/<name>")."""
    yield evaluator_pb2.EvaluateRequest(config=evaluator_pb2.EvaluateConfig(report_html=report_html))
    for role, path in files.items():
        for offset, data, last in file_chunks(path, CHUNK_BYTES):
            yield evaluator_pb2.EvaluateRequest(file=evaluator_pb2.FileChunk(
                role=role, chunk=common_pb2.Chunk(offset=offset, data=data, last=last)))


def _write_stream(out_path: str, chunks: Iterator[bytes]) -> int:
    part = out_path + ".part"
    total = 0
    try:
        with open(part, "wb") as f:
            for data in chunks:
                f.write(data)
                total += len(data)
        os.replace(part, out_path)
    finally:
        if os.path.exists(part):
            os.remove(part)
    return total


class _Token(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor,
             grpc.StreamUnaryClientInterceptor, grpc.StreamStreamClientInterceptor):
    """Adds `authorization: Bearer <token>` to every call."""

    def __init__(self, token: str):
        self.header = ("authorization", f"Bearer {token}")

    def _details(self, d):
        return d._replace(metadata=list(d.metadata or []) + [self.header])

    def intercept_unary_unary(self, continuation, details, request):
        return continuation(self._details(details), request)

    def intercept_unary_stream(self, continuation, details, request):
        return continuation(self._details(details), request)

    def intercept_stream_unary(self, continuation, details, request_iterator):
        return continuation(self._details(details), request_iterator)

    def intercept_stream_stream(self, continuation, details, request_iterator):
        return continuation(self._details(details), request_iterator)


class LipsyncClient:
    def __init__(self, target: str = "127.0.0.1:50051", timeout: float | None = None, token: str | None = None):
        """token: the gateway's bearer token (default: $LIPSYNC_TOKEN; none in the gateway's local mode)."""
        self.channel = grpc.insecure_channel(target, options=OPTIONS)
        token = token if token is not None else os.environ.get("LIPSYNC_TOKEN", "")
        channel = grpc.intercept_channel(self.channel, _Token(token)) if token else self.channel
        self.stub = gateway_pb2_grpc.LipsyncGatewayStub(channel)
        self.timeout = timeout

    def close(self) -> None:
        self.channel.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def lipsync(self, face_path: str, audio_path: str, out_path: str,
                options: common_pb2.LipsyncOptions | None = None,
                on_progress: Callable[[common_pb2.Progress], None] | None = None) -> common_pb2.Summary:
        """Stream the inputs, write the MP4 to out_path as it arrives, return the summary."""
        _check_inputs(face_path, audio_path)
        result: dict = {}

        def video() -> Iterator[bytes]:
            for resp in self.stub.Lipsync(upload_requests(face_path, audio_path, options or common_pb2.LipsyncOptions()),
                                          timeout=self.timeout):
                kind = resp.WhichOneof("payload")
                if kind == "video":
                    yield resp.video.data
                elif kind == "progress" and on_progress is not None:
                    on_progress(resp.progress)
                elif kind == "summary":
                    result["summary"] = resp.summary

        try:
            _write_stream(out_path, video())
        except grpc.RpcError as e:
            raise LipsyncError(e.code(), e.details()) from None
        return result["summary"]

    def submit_job(self, face_path: str, audio_path: str,
                   options: common_pb2.LipsyncOptions | None = None) -> gateway_pb2.Job:
        _check_inputs(face_path, audio_path)
        return self._call(self.stub.SubmitJob,
                          upload_requests(face_path, audio_path, options or common_pb2.LipsyncOptions()))

    def submit_batch(self, pairs: list[tuple[str, str]],
                     options: common_pb2.LipsyncOptions | None = None) -> gateway_pb2.BatchResponse:
        """Upload many (face, audio) pairs in one call; each becomes its own job (see BatchResponse.items)."""
        for face, audio in pairs:
            _check_inputs(face, audio)

        def requests():
            yield gateway_pb2.BatchRequest(options=options or common_pb2.LipsyncOptions())
            for n, (face, audio) in enumerate(pairs):
                for kind, path in ((gateway_pb2.MEDIA_KIND_FACE, face), (gateway_pb2.MEDIA_KIND_AUDIO, audio)):
                    for offset, data, last in file_chunks(path, CHUNK_BYTES):
                        yield gateway_pb2.BatchRequest(media=gateway_pb2.BatchChunk(
                            item=n, kind=kind, chunk=common_pb2.Chunk(offset=offset, data=data, last=last)))
        return self._call(self.stub.SubmitBatch, requests())

    def preview(self, face_path: str, options: common_pb2.LipsyncOptions | None = None) -> common_pb2.PreviewResult:
        """Prepare the face (cached) and get its first frame with a face drawn: crop box, blend mask, landmarks
        (PreviewResult.png), with MuseTalk's bbox_shift range."""
        _check_inputs(face_path)
        return self._call(self.stub.Preview, upload_requests(face_path, None, options or common_pb2.LipsyncOptions()))

    def evaluate(self, source_path: str, generated_path: str, audio_path: str,
                 report_html: bool = False) -> common_pb2.EvaluationResult:
        """Score one generated video against its source and audio (the gateway's evaluator)."""
        files = {"source": source_path, "generated": generated_path, "audio": audio_path}
        _check_inputs(*files.values())
        return self._call(self.stub.Evaluate, evaluate_requests(files, report_html))

    def compare(self, source_path: str, audio_path: str, outputs: dict[str, str],
                report_html: bool = False) -> evaluator_pb2.CompareResult:
        """Score several models' outputs ({name: path}, two or more; the first is the baseline)."""
        files = {"source": source_path, "audio": audio_path, **{f"model/{n}": p for n, p in outputs.items()}}
        _check_inputs(*files.values())
        return self._call(self.stub.Compare, evaluate_requests(files, report_html))

    def get_job(self, job_id: str) -> gateway_pb2.Job:
        return self._call(self.stub.GetJob, gateway_pb2.GetJobRequest(job_id=job_id))

    def cancel_job(self, job_id: str) -> gateway_pb2.Job:
        return self._call(self.stub.CancelJob, gateway_pb2.CancelJobRequest(job_id=job_id))

    def download_result(self, job_id: str, out_path: str) -> int:
        try:
            return _write_stream(out_path, (r.chunk.data for r in self.stub.DownloadResult(
                gateway_pb2.DownloadResultRequest(job_id=job_id), timeout=self.timeout)))
        except grpc.RpcError as e:
            raise LipsyncError(e.code(), e.details()) from None

    def _call(self, method, request):
        try:
            return method(request, timeout=self.timeout)
        except grpc.RpcError as e:
            raise LipsyncError(e.code(), e.details()) from None
