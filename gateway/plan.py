"""A request's plan: what every stage of a lip-sync job needs, decided once, before the first internal call
that depends on it.

The options were checked against the options table (lipsync_common/options.py) when the upload was received
(upload.validate_options); this module only derives from them: the preprocess options, the frame rate and frame
count, and the internal GenerateConfig/RenderConfig messages. Imports no gRPC (protobuf messages only).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import soxr

from lipsync.v1 import common_pb2, generator_pb2, preprocess_pb2, render_pb2
from lipsync_common.edge.server import CHUNK_BYTES
from lipsync_common.formats import media
from lipsync_common.formats.tensors import to_tensor
from lipsync_common import options
from gateway.upload import invalid

AAC_RATES = {7350, 8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000, 64000, 88200, 96000}
GEN_RATE = 16000


@dataclass(frozen=True)
class Audio:
    native: np.ndarray      # [C, S] float32, for muxing
    rate: int               # its rate (one AAC accepts)
    mono16: np.ndarray      # 16 kHz mono float32, for the generator


def load_audio(path: str, max_s: float) -> Audio:
    """The 16 kHz track is made as librosa.load(sr=16000) makes it for MuseTalk: channels averaged, then the
    soxr "HQ" resampler, so the musetalk engine sees the samples MuseTalk's own code would."""
    try:
        native, rate = media.decode_audio(path, max_s)
        if native.shape[1] == 0:
            raise invalid("the audio has zero length")
        mono = native.mean(axis=0)
        mono16 = mono if rate == GEN_RATE else soxr.resample(mono, rate, GEN_RATE, quality="soxr_hq")
        if rate not in AAC_RATES:
            native, rate = media.decode_audio(path, max_s, sample_rate=48000)
    except media.MediaError as e:
        raise invalid(str(e)) from None
    return Audio(native, rate, np.ascontiguousarray(mono16, dtype=np.float32))


def prepare_options(o: common_pb2.LipsyncOptions) -> preprocess_pb2.PrepareOptions:
    """The face options of a request, as preprocess takes them (unset optional fields stay unset)."""
    opts = preprocess_pb2.PrepareOptions(model_version=o.model_version, bbox_shift=o.bbox_shift,
                                         parsing_mode=o.parsing_mode)
    for name in ("extra_margin", "face_index", "smoothing", "left_cheek_width", "right_cheek_width"):
        if o.HasField(name):
            setattr(opts, name, getattr(o, name))
    if o.HasField("face_hint"):
        opts.face_hint.CopyFrom(o.face_hint)
    return opts


@dataclass(frozen=True)
class Plan:
    fps: float
    frames: int                                  # floor(audio seconds x fps), at least 1
    audio: Audio
    prepared: preprocess_pb2.PreparedSource
    generate: generator_pb2.GenerateConfig
    render: render_pb2.RenderConfig

    def generate_requests(self):
        """The Generate call's messages: the config, then the 16 kHz audio in pieces."""
        yield generator_pb2.GenerateRequest(config=self.generate)
        mono, step = self.audio.mono16, CHUNK_BYTES // 4
        for i in range(0, len(mono), step):
            yield generator_pb2.GenerateRequest(audio=to_tensor(mono[i:i + step]))

    def render_requests(self):
        """The Render call's first messages: the config, then the audio to mux as int16 PCM (crops follow)."""
        yield render_pb2.RenderRequest(config=self.render)
        pcm = (np.clip(self.audio.native.T, -1, 1) * 32767).astype(np.int16)
        step = CHUNK_BYTES // (2 * pcm.shape[1])
        for i in range(0, len(pcm), step):
            yield render_pb2.RenderRequest(audio=to_tensor(pcm[i:i + step]))

    def summary(self, rendered: render_pb2.RenderSummary, generated: generator_pb2.GenerateSummary,
                timings: list[common_pb2.StageTiming], output_bytes: int) -> common_pb2.Summary:
        return common_pb2.Summary(
            frames=rendered.frames, duration_s=rendered.frames / self.fps, fps=self.fps,
            width=rendered.width, height=rendered.height, engine=generated.engine,
            engine_description=generated.engine_description, engine_detail=generated.engine_detail,
            timings=timings, output_bytes=output_bytes, source_frames=self.prepared.num_frames,
            frames_without_face=self.prepared.num_frames - self.prepared.frames_with_face)


def make_plan(o: common_pb2.LipsyncOptions, prepared: preprocess_pb2.PreparedSource, audio: Audio) -> Plan:
    """The plan of a request whose options passed validation, once preprocess has seen the face media.
    fps: the request's, else the source's, else the table's internal default; raises Failure(INVALID_ARGUMENT)
    when the audio is too short for one frame."""
    fps = o.fps or prepared.fps or float(options.INTERNAL_FPS.default)
    mono = audio.mono16
    frames = options.frame_count(len(mono), GEN_RATE, fps)
    if frames == 0:
        raise invalid("the audio is too short for a single frame")
    generate = generator_pb2.GenerateConfig(
        source_id=prepared.source_id, engine=o.engine, model_version=o.model_version, fps=fps,
        audio_sample_rate=GEN_RATE, priority=o.priority, num_frames=frames)
    render = render_pb2.RenderConfig(
        source_id=prepared.source_id, fps=fps, num_frames=frames, codec=o.codec, audio_sample_rate=audio.rate,
        audio_channels=audio.native.shape[0], color_match=o.color_match)
    if o.HasField("crf"):
        render.crf = o.crf
    return Plan(fps=fps, frames=frames, audio=audio, prepared=prepared, generate=generate, render=render)
