"""The page's live tab as a plain module (asyncio + PyAV, no Gradio): a face and a speech file played into a live
session at the pace of speech, as a voice agent would stream it. Frames come back as H.264 access units; each is
decoded as it arrives so the page shows the newest one, and at the end the access units and the session's own
audio track (speech, silence on idle frames, sample-aligned with the frames) are muxed into an MP4 to play back.
"""
from __future__ import annotations

import asyncio
import fractions
import os
import time
from dataclasses import dataclass
from typing import AsyncIterator

import av
import numpy as np

from lipsync.v1 import common_pb2, gateway_pb2
from lipsync_client.live import LiveSession, percentile
from lipsync_common.formats import media

CHUNK_MS = 20                    # audio goes out as a voice agent sends it: 20 ms at a time, at the pace of speech
SHOW_EVERY_S = 0.2               # the page's frame and figures are updated this often
SHOW_WIDTH = 480                 # the shown frame's width (the recorded MP4 keeps the full size)
MAX_SPEECH_S = 120               # a page session is a try-out: at most 2 minutes of speech
SESSION_RATES = {8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000}   # live input rates AAC also takes


@dataclass
class LiveUpdate:
    image: np.ndarray | None     # the newest frame, RGB, scaled to SHOW_WIDTH
    status: str                  # Markdown: the session and its figures so far
    video: str | None = None     # the recorded MP4, with the last update


def speech_pcm(path: str) -> tuple[bytes, int]:
    """Any speech file -> 16-bit mono PCM at its own rate when a live session and AAC both take it, else 16 kHz."""
    audio, rate = media.decode_audio(path, MAX_SPEECH_S, mono=True)
    if rate not in SESSION_RATES:
        audio, rate = media.decode_audio(path, MAX_SPEECH_S, sample_rate=16000, mono=True)
    if audio.shape[1] == 0:
        raise media.MediaError("the speech has no samples")
    return (np.clip(audio[0], -1, 1) * 32767).round().astype("<i2").tobytes(), rate


def status_markdown(ready: gateway_pb2.LiveReady, frames: int, latencies: list[float],
                    stats: gateway_pb2.LiveStats | None, done: bool = False) -> str:
    head = (f"**{'recorded' if done else 'live'}**: engine **{ready.engine}** ({ready.engine_detail}), "
            f"{ready.width}x{ready.height} at {ready.fps:g} fps, lookahead {ready.lookahead_frames} frames")
    figures = f"{frames} frames ({frames / ready.fps:.1f} s)"
    if latencies:
        figures += (f"; latency from the audio's arrival to its frame: p50 {percentile(latencies, 50):.0f} ms, "
                    f"p95 {percentile(latencies, 95):.0f} ms")
    if stats is not None:
        figures += f"; {stats.speech_frames} speech, {stats.idle_frames} idle, {stats.frames_late} late"
    return head + "\n\n" + figures


def _shown(picture: av.VideoFrame) -> np.ndarray:
    height = max(2, round(picture.height * SHOW_WIDTH / picture.width / 2) * 2)
    return picture.reformat(width=SHOW_WIDTH, height=height, format="rgb24").to_ndarray()


async def run(target: str, token: str, face: str, speech: str, options: common_pb2.LipsyncOptions,
              out_path: str) -> AsyncIterator[LiveUpdate]:
    """The session, as updates for the page; the last one carries the recorded MP4 at out_path. Errors come as
    LipsyncError (the gateway's status) or media.MediaError (the speech)."""
    pcm, rate = speech_pcm(speech)
    raw = out_path + ".h264"
    decoder = av.CodecContext.create("h264", "r")
    frames, latencies, stats, picture, session_pcm = 0, [], None, None, bytearray()
    session = LiveSession(target, face=face, sample_rate=rate, options=options, token=token,
                          output=gateway_pb2.LIVE_OUTPUT_H264_AU)
    try:
        async with session:
            ready = await session.ready()
            yield LiveUpdate(None, status_markdown(ready, 0, [], None))
            sender = asyncio.create_task(session.play(pcm, chunk_ms=CHUNK_MS))
            shown_at = time.monotonic()
            try:
                with open(raw, "wb") as video:
                    async for msg in session:
                        if msg.WhichOneof("payload") == "stats":
                            stats = msg.stats
                        if msg.WhichOneof("payload") != "frame":
                            continue
                        f = msg.frame
                        video.write(f.data)
                        session_pcm += f.pcm
                        frames += 1
                        if f.speech:
                            latencies.append(f.latency_ms)
                        for picture in decoder.decode(av.Packet(f.data)):
                            pass
                        if picture is not None and time.monotonic() - shown_at >= SHOW_EVERY_S:
                            shown_at = time.monotonic()
                            yield LiveUpdate(_shown(picture), status_markdown(ready, frames, latencies, stats))
                await sender
            finally:
                sender.cancel()
        mux(raw, bytes(session_pcm), rate, ready.fps, out_path)
    finally:
        if os.path.exists(raw):
            os.remove(raw)
    yield LiveUpdate(None if picture is None else _shown(picture),
                     status_markdown(ready, frames, latencies, stats, done=True), out_path)


def mux(raw_h264: str, pcm: bytes, rate: int, fps: float, out_path: str) -> None:
    """H.264 access units (Annex B, one per frame) and 16-bit mono PCM -> MP4: the video as it is (no re-encoding),
    the audio as AAC, both from time 0."""
    frame_time = 1 / fractions.Fraction(fps).limit_denominator(1001)
    audio = np.frombuffer(pcm, "<i2").astype(np.float32) / 32768
    with av.open(raw_h264, format="h264") as src, av.open(out_path, "w", format="mp4") as dst:
        vin = src.streams.video[0]
        vout = dst.add_stream_from_template(vin)
        aout = dst.add_stream("aac", rate=rate, layout="mono")
        index = 0
        for packet in src.demux(vin):
            if packet.size == 0:
                continue
            packet.stream, packet.time_base = vout, frame_time
            packet.pts = packet.dts = index
            packet.duration = 1
            dst.mux(packet)
            index += 1
        for start in range(0, len(audio), 1024):
            frame = av.AudioFrame.from_ndarray(audio[None, start:start + 1024], format="fltp", layout="mono")
            frame.sample_rate, frame.pts, frame.time_base = rate, start, fractions.Fraction(1, rate)
            dst.mux(aout.encode(frame))
        dst.mux(aout.encode(None))
