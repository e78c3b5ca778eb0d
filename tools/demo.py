"""`make demo`: start the stack, lip-sync the bundled sample, write out/demo.mp4, stop the stack.
`python -m tools.demo DIR` writes into DIR instead (the services' files go to DIR/stack).

The face is the astronaut portrait (Eileen Collins, NASA, public domain) that ships inside scikit-image;
the speech is assets/demo_speech.wav (synthesised with espeak-ng for this project).
"""
from __future__ import annotations

import os
import sys
import time

import cv2
import skimage.data

from lipsync.v1 import common_pb2
from lipsync_client import LipsyncClient
from lipsync_client.cli import Progress
from tools.stack import ROOT, Stack


def main(out_dir: str | None = None) -> int:
    stack_dir = os.path.join(out_dir, "stack") if out_dir else os.path.join(ROOT, "var", "demo")
    out_dir = out_dir or os.path.join(ROOT, "out")
    os.makedirs(out_dir, exist_ok=True)
    face = os.path.join(out_dir, "demo_face.png")
    cv2.imwrite(face, cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR))
    audio = os.path.join(ROOT, "assets", "demo_speech.wav")
    out = os.path.join(out_dir, "demo.mp4")
    print("starting preprocess, generator, render, evaluator and gateway on 127.0.0.1 ...", flush=True)
    stack = Stack.start(stack_dir)
    try:
        t0 = time.perf_counter()
        with LipsyncClient(stack.addrs["gateway"]) as client:
            bar = Progress(quiet=False)
            s = client.lipsync(face, audio, out, common_pb2.LipsyncOptions(engine="auto"), on_progress=bar)
            bar.close()
        print(f"wrote {out}: {s.frames} frames, {s.duration_s:.2f} s at {s.fps:g} fps, "
              f"{s.width}x{s.height}, engine {s.engine} ({s.engine_description}), "
              f"{time.perf_counter() - t0:.1f} s")
        if s.engine_detail:
            print(f"  driven by: {s.engine_detail}")
    finally:
        stack.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else None))
