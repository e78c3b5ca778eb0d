"""`lipsync live`: stream an audio file (or 16-bit mono PCM from stdin) into a live session at real-time pace (or as
fast as the session takes it), write what comes back and print latency percentiles.

Output: `--out live.mp4` gets the video as fragmented MP4 (init segment + one fragment per frame, exactly the bytes
the session sent) and `live.wav` beside it the session's audio track (speech where frames show speech, silence on
idle frames), sample-aligned with the video: a player that starts both together keeps lips and sound together.
"""
from __future__ import annotations

import asyncio
import os
import sys
import wave

import av

from lipsync.v1 import gateway_pb2
from lipsync_client.live import LiveSession, percentile

CHUNK_MS = 20


def read_pcm(path: str, rate: int) -> tuple[bytes, int]:
    """16-bit mono PCM and its rate: an audio file (any format PyAV decodes, mixed down to mono at its own rate, or
    48 kHz when that is outside 8-48 kHz), or raw PCM from stdin ("-") at `rate`. ValueError when the file has no
    audio the session can take."""
    if path == "-":
        return sys.stdin.buffer.read(), rate
    try:
        with av.open(path) as container:
            if not container.streams.audio:
                raise ValueError(f"{path}: no audio stream")
            stream = container.streams.audio[0]
            out_rate = stream.rate if 8000 <= (stream.rate or 0) <= 48000 else 48000
            resampler = av.AudioResampler(format="s16", layout="mono", rate=out_rate)
            parts = []
            for frame in container.decode(stream):
                parts += [bytes(f.planes[0])[:2 * f.samples] for f in resampler.resample(frame)]
            parts += [bytes(f.planes[0])[:2 * f.samples] for f in resampler.resample(None)]
    except av.FFmpegError as e:
        raise ValueError(f"{path}: not an audio file ({e})") from None
    return b"".join(parts), out_rate


async def run_live(args, options) -> int:
    pcm, rate = read_pcm(args.audio, args.rate)
    out_wav = os.path.splitext(args.out)[0] + ".wav"
    session = LiveSession(args.target, face=args.video or args.image or "", source_id=args.source_id or "",
                          sample_rate=rate, options=options, output=gateway_pb2.LIVE_OUTPUT_FMP4, token=args.token)
    latencies, frames, last_stats = [], 0, None
    async with session:
        ready = await session.ready()
        print(f"session ready: avatar {ready.source_id}, engine {ready.engine} ({ready.engine_detail}), "
              f"{ready.width}x{ready.height} at {ready.fps:g} fps, lookahead {ready.lookahead_frames} frames")

        sender = asyncio.create_task(session.play(pcm, realtime=args.realtime, chunk_ms=CHUNK_MS))
        with open(args.out, "wb") as video, wave.open(out_wav, "wb") as audio:
            audio.setnchannels(1), audio.setsampwidth(2), audio.setframerate(rate)
            video.write(ready.init_segment)
            async for msg in session:
                if msg.WhichOneof("payload") == "frame":
                    video.write(msg.frame.data)
                    audio.writeframes(msg.frame.pcm)
                    frames += 1
                    if msg.frame.speech:
                        latencies.append(msg.frame.latency_ms)
                elif msg.WhichOneof("payload") == "stats":
                    last_stats = msg.stats
        await sender
    pct = {q: percentile(latencies, q) for q in (50, 95, 99)} if latencies else {}
    print(f"wrote {args.out} and {out_wav}: {frames} frames ({frames / ready.fps:.2f} s)"
          + (f", {last_stats.speech_frames} speech, {last_stats.idle_frames} idle, {last_stats.frames_late} late"
             if last_stats else ""))
    if pct:
        print("latency from audio arrival to frame out: " + ", ".join(f"p{q} {v:.0f} ms" for q, v in pct.items()))
    return 0
