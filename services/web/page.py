"""The web page (Gradio): a face and a voice in, the lip-synced video out, through the gateway's public API.

A plain module: it builds the Blocks and the handlers over a client factory (`LipsyncClient` in the service), and
imports no service code. Ranges and defaults come from the one options table.
"""
from __future__ import annotations

import os
import tempfile
import time
from typing import Callable

import gradio as gr

from lipsync.v1 import common_pb2
from lipsync_client.client import LipsyncClient, LipsyncError
from lipsync_common import options

KEEP_OUTPUTS_S = 3600          # generated files older than this are removed at the next request


def _slider(name: str, label: str, step: float = 1) -> gr.Slider:
    o = options.OPTIONS[name]
    lo = 0 if o.zero else o.lo
    info = o.help + (f" (0: {o.zero})" if o.zero else "")
    return gr.Slider(lo, o.hi, value=o.default, step=step, label=label, info=info)


def request_options(engine: str, version: str, bbox_shift: float, extra_margin: float, fps: float,
                    crf: float) -> common_pb2.LipsyncOptions:
    """The page's controls as the API's options, checked against the table (the gateway checks them again)."""
    o = common_pb2.LipsyncOptions(engine=engine, model_version=options.VERSION_BY_NAME[version],
                                  bbox_shift=int(bbox_shift), extra_margin=int(extra_margin), fps=float(fps),
                                  crf=int(crf))
    options.check_request(o)
    return o


def summary_markdown(s: common_pb2.Summary) -> str:
    timings = ", ".join(f"{common_pb2.Stage.Name(t.stage).removeprefix('STAGE_').lower()} {t.seconds:.2f} s"
                        for t in s.timings)
    lines = [f"**{s.frames} frames**, {s.duration_s:.2f} s at {s.fps:g} fps, {s.width}x{s.height}, "
             f"{s.output_bytes / 1e6:.2f} MB", f"engine **{s.engine}**: {s.engine_description}"]
    if s.engine_detail:
        lines.append(f"driven by: {s.engine_detail}")
    lines.append(f"source: {s.source_frames} frames, {s.frames_without_face} without a face; {timings}")
    return "\n\n".join(lines)


def _sweep(folder: str) -> None:
    now = time.time()
    for name in os.listdir(folder):
        path = os.path.join(folder, name)
        if name.startswith("lipsync-") and now - os.path.getmtime(path) > KEEP_OUTPUTS_S:
            os.remove(path)


def make_generate(connect: Callable[[], LipsyncClient], work_dir: str):
    def generate(face: str | None, audio: str | None, engine: str, version: str, bbox_shift: float,
                 extra_margin: float, fps: float, crf: float, progress=gr.Progress()):
        if not face:
            raise gr.Error("Upload a face video or image first.")
        if not audio:
            raise gr.Error("Upload or record the speech first.")
        try:
            opts = request_options(engine, version, bbox_shift, extra_margin, fps, crf)
        except options.OptionError as e:
            raise gr.Error(str(e)) from None
        _sweep(work_dir)
        fd, out = tempfile.mkstemp(prefix="lipsync-", suffix=".mp4", dir=work_dir)
        os.close(fd)

        def on_progress(p: common_pb2.Progress) -> None:
            stage = common_pb2.Stage.Name(p.stage).removeprefix("STAGE_").lower()
            progress((p.done, p.total) if p.total else None, desc=stage, unit="frames")

        try:
            with connect() as client:
                summary = client.lipsync(face, audio, out, opts, on_progress=on_progress)
        except LipsyncError as e:
            os.remove(out)
            raise gr.Error(f"{e.code.name}: {e.message}") from None
        except Exception:
            os.remove(out)
            raise
        return out, summary_markdown(summary)
    return generate


def build(connect: Callable[[], LipsyncClient], work_dir: str) -> gr.Blocks:
    os.makedirs(work_dir, exist_ok=True)
    with gr.Blocks(title="lipsync", delete_cache=(600, 3600)) as page:
        gr.Markdown("# lipsync\nA face video or image and speech in; the same video with the mouth following the "
                    "speech out. The weight-free default engine moves the mouth from the audio; `musetalk` needs "
                    "its weights on the server.")
        with gr.Tab("Generate"):
            with gr.Row():
                with gr.Column():
                    face = gr.File(label="face video or image", file_types=["video", "image"], type="filepath",
                                   elem_id="face")
                    audio = gr.Audio(label="speech", sources=["upload", "microphone"], type="filepath",
                                     elem_id="speech")
                    with gr.Row():
                        engine = gr.Dropdown(list(options.ENGINES), value="auto", label="engine")
                        version = gr.Dropdown(sorted(options.VERSION_BY_NAME), value="v15", label="model version")
                    bbox_shift = _slider("bbox_shift", "bbox_shift (v1)")
                    extra_margin = _slider("extra_margin", "extra_margin (v1.5)")
                    fps = _slider("fps", "fps", step=0.01)
                    crf = _slider("crf", "crf")
                    run = gr.Button("Generate", variant="primary", elem_id="generate")
                with gr.Column():
                    video = gr.Video(label="result", elem_id="result")
                    summary = gr.Markdown(elem_id="summary")
        run.click(make_generate(connect, work_dir), [face, audio, engine, version, bbox_shift, extra_margin, fps, crf],
                  [video, summary], api_name="generate")
    return page
