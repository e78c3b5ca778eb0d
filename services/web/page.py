"""The web page (Gradio): a face and a voice in, the lip-synced video out (or a live session), through the
gateway's public API.

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
from lipsync_common.formats.media import MediaError
from services.web import live

KEEP_OUTPUTS_S = 3600          # generated files older than this are removed at the next request


def _slider(name: str, label: str, step: float = 1) -> gr.Slider:
    o = options.OPTIONS[name]
    lo = 0 if o.zero else o.lo
    info = o.help + (f" (0: {o.zero})" if o.zero else "")
    return gr.Slider(lo, o.hi, value=o.default, step=step, label=label, info=info)


def face_options(version: str, bbox_shift: float, extra_margin: float, face_index: float, smoothing: bool,
                 parsing_mode: str, left_cheek_width: float, right_cheek_width: float) -> common_pb2.LipsyncOptions:
    """How the face is prepared, as the API's options, checked against the table (the gateway checks again)."""
    o = common_pb2.LipsyncOptions(model_version=options.VERSION_BY_NAME[version], bbox_shift=int(bbox_shift),
                                  extra_margin=int(extra_margin), face_index=int(face_index), smoothing=bool(smoothing),
                                  parsing_mode=parsing_mode, left_cheek_width=int(left_cheek_width),
                                  right_cheek_width=int(right_cheek_width))
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


class Handlers:
    """What the page's buttons do, over a client factory and a folder for the files they write."""

    def __init__(self, connect: Callable[[], LipsyncClient], work_dir: str, gateway: tuple[str, str] = ("", "")):
        self.connect, self.work_dir = connect, work_dir
        self.gateway = gateway          # (address, token) for live sessions (asyncio, their own channel)
        os.makedirs(work_dir, exist_ok=True)

    def _file(self, suffix: str) -> str:
        now = time.time()
        for name in os.listdir(self.work_dir):
            path = os.path.join(self.work_dir, name)
            if name.startswith("lipsync-") and now - os.path.getmtime(path) > KEEP_OUTPUTS_S:
                os.remove(path)
        fd, path = tempfile.mkstemp(prefix="lipsync-", suffix=suffix, dir=self.work_dir)
        os.close(fd)
        return path

    def _call(self, fn, *args, **kw):
        try:
            with self.connect() as client:
                return fn(client, *args, **kw)
        except LipsyncError as e:
            raise gr.Error(f"{e.code.name}: {e.message}") from None
        except options.OptionError as e:
            raise gr.Error(str(e)) from None

    def preview(self, face: str | None, *face_fields):
        if not face:
            raise gr.Error("Upload a face video or image first.")
        p = self._call(lambda c: c.preview(face, face_options(*face_fields)))
        path = self._file(".png")
        with open(path, "wb") as f:
            f.write(p.png)
        b, r = p.crop_box, p.bbox_shift_range
        return path, (f"source frame {p.frame}, crop box ({b.x1:g}, {b.y1:g})-({b.x2:g}, {b.y2:g}); "
                      f"**bbox_shift range [{r.min}, {r.max}]** (the current value: {int(face_fields[1])})")

    def generate(self, face: str | None, audio: str | None, engine: str, fps: float, crf: float, lossless: bool,
                 color_match: bool, priority: str, *face_fields, progress=gr.Progress()):
        if not face:
            raise gr.Error("Upload a face video or image first.")
        if not audio:
            raise gr.Error("Upload or record the speech first.")

        def run(client):
            o = face_options(*face_fields)
            o.engine, o.fps, o.crf, o.color_match = engine, float(fps), int(crf), bool(color_match)
            o.priority = options.PRIORITY_BY_NAME[priority]
            if lossless:
                o.codec = common_pb2.VIDEO_CODEC_H264_LOSSLESS_RGB
            options.check_request(o)
            return client.lipsync(face, audio, out, o, on_progress=on_progress)

        def on_progress(p: common_pb2.Progress) -> None:
            stage = common_pb2.Stage.Name(p.stage).removeprefix("STAGE_").lower()
            progress((p.done, p.total) if p.total else None, desc=stage, unit="frames")

        out = self._file(".mp4")
        try:
            summary = self._call(run)
        except BaseException:
            os.remove(out)
            raise
        return out, summary_markdown(summary)

    async def live(self, face: str | None, audio: str | None, engine: str, fps: float, *face_fields):
        """A live session fed with the speech at the pace it is spoken: (newest frame, figures, recorded MP4)
        updates as frames arrive. Closing the page ends the session (the generator is closed)."""
        if not face:
            raise gr.Error("Upload a face video or image first.")
        if not audio:
            raise gr.Error("Upload or record the speech first.")
        try:
            o = face_options(*face_fields)
            o.engine, o.fps = engine, float(fps)
            options.check_request(o)
        except options.OptionError as e:
            raise gr.Error(str(e)) from None
        out, recorded = self._file(".mp4"), False
        try:
            async for u in live.run(*self.gateway, face, audio, o, out):
                recorded = u.video is not None
                yield u.image, u.status, u.video
        except LipsyncError as e:
            raise gr.Error(f"{e.code.name}: {e.message}") from None
        except MediaError as e:
            raise gr.Error(f"the speech: {e}") from None
        finally:
            if not recorded and os.path.exists(out):      # failed or closed: no half-written file is kept
                os.remove(out)

    def compare(self, source: str | None, audio: str | None, outputs: list[str] | None, names: str):
        """One output: its evaluation; two or more: the comparison (the first is the baseline). Returns the table
        (rows of metric, one value per model, better, winner) and the report's HTML with its plots."""
        outputs = outputs or []
        if not source or not audio or not outputs:
            raise gr.Error("Give the source face, the speech and at least one generated video.")
        given = [n.strip() for n in (names or "").split(",") if n.strip()]
        labels = given if len(given) == len(outputs) else [os.path.basename(p) for p in outputs]
        if len(set(labels)) != len(labels):
            raise gr.Error("Give each output a different name (comma-separated, in upload order).")
        if len(outputs) == 1:
            r = self._call(lambda c: c.evaluate(source, outputs[0], audio, report_html=True))
            rows = [[m.name, _value(m), m.better, ""] for m in r.metrics]
            return gr.update(value=rows, headers=["metric", labels[0], "better", "note"]), r.report_html.decode()
        r = self._call(lambda c: c.compare(source, audio, dict(zip(labels, outputs)), report_html=True))
        rows = [[m.name, *(v.value if v.HasField("value") else None for v in m.values), m.better, m.winner]
                for m in r.metrics]
        return gr.update(value=rows, headers=["metric", *labels, "better", "winner"]), r.report_html.decode()


def _value(m: common_pb2.Metric):
    return m.value if m.HasField("value") else (m.unavailable or None)


def _face_controls() -> list:
    with gr.Row():
        version = gr.Dropdown(sorted(options.VERSION_BY_NAME), value="v15", label="model version")
        parsing_mode = gr.Radio(list(options.PARSING_MODES), value=options.PARSING_MODES[0], label="parsing mode",
                                info="face-parsing blend region (needs the BiSeNet weights; else no effect)")
    with gr.Row():
        face_index = _slider("face_index", "face index")
        smoothing = gr.Checkbox(value=True, label="smooth the landmarks", info="One Euro filter against jitter")
    return [version, _slider("bbox_shift", "bbox_shift (v1)"), _slider("extra_margin", "extra_margin (v1.5)"),
            face_index, smoothing, parsing_mode, _slider("left_cheek_width", "left cheek width", step=5),
            _slider("right_cheek_width", "right cheek width", step=5)]


def _inputs(prefix: str = "") -> tuple:
    """The face, the speech, the engine and the frame rate: (face, audio, engine, fps); element ids `face`,
    `speech` with a prefix per tab."""
    face = gr.File(label="face video or image", file_types=["video", "image"], type="filepath",
                   elem_id=f"{prefix}face")
    audio = gr.Audio(label="speech", sources=["upload", "microphone"], type="filepath", elem_id=f"{prefix}speech")
    return face, audio, gr.Dropdown(list(options.ENGINES), value="auto", label="engine"), _slider("fps", "fps", 0.01)


def _generate_tab(h: Handlers) -> None:
    with gr.Row():
        with gr.Column():
            face, audio, engine, fps = _inputs()
            crf = _slider("crf", "crf")
            with gr.Row():
                lossless = gr.Checkbox(label="lossless RGB H.264", info="large files; for checks")
                color_match = gr.Checkbox(label="match colours", info="the generated region's colour to the frame's")
                priority = gr.Dropdown(sorted(options.PRIORITY_BY_NAME), value="default", label="priority",
                                       info="share of the GPU under load")
            face_fields = _face_controls()
            with gr.Row():
                preview = gr.Button("Preview", elem_id="preview")
                run = gr.Button("Generate", variant="primary", elem_id="generate")
        with gr.Column():
            shown = gr.Image(label="preview: crop box, blend mask, landmarks", type="filepath", elem_id="preview-image")
            info = gr.Markdown(elem_id="preview-info")
            video = gr.Video(label="result", elem_id="result")
            summary = gr.Markdown(elem_id="summary")
    preview.click(h.preview, [face, *face_fields], [shown, info], api_name="preview")
    run.click(h.generate, [face, audio, engine, fps, crf, lossless, color_match, priority, *face_fields],
              [video, summary], api_name="generate")


def _live_tab(h: Handlers) -> None:
    gr.Markdown("A live session, as a voice agent drives one: the speech goes in 20 ms at a time at the pace it "
                "is spoken, each frame is shown as it comes back, with the latency from the audio's arrival to its "
                "frame; the whole session is recorded with its sound for playing back.")
    with gr.Row():
        with gr.Column():
            face, audio, engine, fps = _inputs("live-")
            with gr.Accordion("face options", open=False):
                face_fields = _face_controls()
            run = gr.Button("Start the live session", variant="primary", elem_id="live-start")
        with gr.Column():
            shown = gr.Image(label="live: the newest frame", elem_id="live-frame")
            status = gr.Markdown(elem_id="live-status")
            video = gr.Video(label="the session, recorded", elem_id="live-result")
    run.click(h.live, [face, audio, engine, fps, *face_fields], [shown, status, video], api_name="live")


def _evaluate_tab(h: Handlers) -> None:
    gr.Markdown("Score one output, or compare two or more outputs of the same source and speech (the first is "
                "the baseline). Metrics whose weights are not installed say so.")
    with gr.Row():
        source = gr.File(label="source face video or image", type="filepath", elem_id="eval-source")
        audio = gr.File(label="speech", type="filepath", elem_id="eval-audio")
        outputs = gr.File(label="generated videos", file_count="multiple", type="filepath", elem_id="eval-outputs")
    names = gr.Textbox(label="names of the outputs (comma-separated, in upload order; default: file names)")
    run = gr.Button("Evaluate", variant="primary", elem_id="evaluate")
    table = gr.Dataframe(label="metrics", elem_id="eval-table", wrap=True)
    report = gr.HTML(elem_id="eval-report")
    run.click(h.compare, [source, audio, outputs, names], [table, report], api_name="compare")


def build(connect: Callable[[], LipsyncClient], work_dir: str, gateway: tuple[str, str] = ("", "")) -> gr.Blocks:
    h = Handlers(connect, work_dir, gateway)
    with gr.Blocks(title="lipsync", delete_cache=(600, 3600)) as page:
        gr.Markdown("# lipsync\nA face video or image and speech in; the same video with the mouth following the "
                    "speech out. The weight-free default engine moves the mouth from the audio; `musetalk` needs "
                    "its weights on the server.")
        with gr.Tab("Generate"):
            _generate_tab(h)
        with gr.Tab("Live"):
            _live_tab(h)
        with gr.Tab("Evaluate / compare"):
            _evaluate_tab(h)
    return page
