"""`lipsync live`: stream a WAV file (or 16-bit mono PCM from stdin) into a live session at real-time pace (or as
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

from lipsync.v1 import gateway_pb2
from lipsync_client.live import LiveSession, percentile

CHUNK_MS = 20


def read_pcm(path: str, rate: int) -> tuple[bytes, int]:
    """16-bit mono PCM and its rate: a WAV file (its own rate), or raw PCM from stdin ("-") at `rate`."""
    if path == "-":
        return sys.stdin.buffer.read(), rate
    with wave.open(path, "rb") as w:
        if w.getsampwidth() != 2 or w.getnchannels() != 1:
            raise ValueError(f"{path}: live input must be 16-bit mono WAV (got {w.getnchannels()} channels, "
                             f"{8 * w.getsampwidth()} bit)")
        return w.readframes(w.getnframes()), w.getframerate()


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
