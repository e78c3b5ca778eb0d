"""The one table of request options: default, range and meaning of each, and the names of the enums.

The gateway validates a request against it once (`check_request`); the internal services reject bad internal
requests with the same rules and messages (`check`); the CLI and the web page take their flags, ranges and help from
it. Imports no gRPC (the enums come from the generated messages).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from lipsync.v1 import common_pb2


class OptionError(ValueError):
    """A value out of its range or not one of its choices; the message names the option and what it accepts."""


@dataclass(frozen=True)
class Option:
    default: float
    lo: float
    hi: float
    help: str
    integer: bool = True
    zero: str = ""          # what 0 means when 0 lies outside (lo, hi] ("the source's rate")

    def check(self, name: str, value: float) -> float:
        if self.zero and value == 0:
            return value
        if isinstance(value, float) and not math.isfinite(value):
            raise OptionError(f"{name} {value} is not a finite number")
        ok = (self.lo < value <= self.hi) if self.zero else (self.lo <= value <= self.hi)
        if not ok:
            span = f"({self.lo:g}, {self.hi:g}]" if self.zero else f"[{self.lo:g}, {self.hi:g}]"
            use = f"use 0 ({self.zero}) or a value in {span}" if self.zero else f"use a value in {span}"
            raise OptionError(f"{name} {value:g} is out of range: {use}")
        return value


OPTIONS: dict[str, Option] = {
    "bbox_shift": Option(0, -100, 100, "pixels to move the crop's top edge (MuseTalk v1's bbox_shift; + = lower)"),
    "extra_margin": Option(10, 0, 100, "pixels added below the chin (MuseTalk v1.5's extra_margin)"),
    "face_index": Option(-1, -1, 16, "which face when several are seen: -1 = the largest, k = the k-th from the left"),
    "fps": Option(0, 0, 60, "output frame rate", integer=False, zero="the source's rate"),
    "crf": Option(18, 0, 51, "H.264 quality: 0 = lossless luma, 18 = visually lossless, 51 = worst"),
    "left_cheek_width": Option(90, 20, 160, "jaw parsing mode: face width kept left of centre before the cheek "
                               "is narrowed (512-pixel parsing frame; MuseTalk v1.5)"),
    "right_cheek_width": Option(90, 20, 160, "jaw parsing mode: the same to the right of centre"),
}
# MuseTalk v1.5's face-parsing blend regions (BiSeNet weights installed; no-ops on the landmark mask).
PARSING_MODES = ("jaw", "raw")
# Between the services the frame rate is the source's own when the request left it at 0: up to this much.
INTERNAL_FPS = Option(25, 0, 120, "frame rate between the services", integer=False)

ENGINES = ("auto", "warp", "visemes", "loudness", "musetalk")
MODEL_VERSIONS = {common_pb2.MODEL_VERSION_UNSPECIFIED: "v15", common_pb2.MODEL_VERSION_V15: "v15",
                  common_pb2.MODEL_VERSION_V1: "v1"}
VERSION_BY_NAME = {"v1": common_pb2.MODEL_VERSION_V1, "v15": common_pb2.MODEL_VERSION_V15}
PRIORITIES = {common_pb2.PRIORITY_UNSPECIFIED: "", common_pb2.PRIORITY_INTERACTIVE: "interactive",
              common_pb2.PRIORITY_BATCH: "batch"}      # "": the call's kind decides (streams interactive, jobs batch)
PRIORITY_BY_NAME = {"default": common_pb2.PRIORITY_UNSPECIFIED, "interactive": common_pb2.PRIORITY_INTERACTIVE,
                    "batch": common_pb2.PRIORITY_BATCH}
CODECS = {common_pb2.VIDEO_CODEC_UNSPECIFIED: "h264", common_pb2.VIDEO_CODEC_H264: "h264",
          common_pb2.VIDEO_CODEC_H264_LOSSLESS_RGB: "h264-lossless-rgb"}


def check(name: str, value: float) -> float:
    return OPTIONS[name].check(name, value)


def model_version(value: int) -> str:
    if value not in MODEL_VERSIONS:
        raise OptionError(f"unknown model_version {value}; use MODEL_VERSION_V1 or MODEL_VERSION_V15")
    return MODEL_VERSIONS[value]


def priority(value: int) -> str:
    if value not in PRIORITIES:
        raise OptionError(f"unknown priority {value}; use PRIORITY_INTERACTIVE or PRIORITY_BATCH")
    return PRIORITIES[value]


def codec(value: int) -> str:
    if value not in CODECS:
        raise OptionError(f"unknown codec {value}; use VIDEO_CODEC_H264 or VIDEO_CODEC_H264_LOSSLESS_RGB")
    return CODECS[value]


def crf(msg) -> int:
    """The crf of a message with an optional `crf` field: its own, or the table's default."""
    return int(check("crf", msg.crf) if msg.HasField("crf") else OPTIONS["crf"].default)


def face_hint(b) -> tuple[float, float, float, float]:
    box = (b.x1, b.y1, b.x2, b.y2)
    if not all(math.isfinite(v) for v in box) or not (b.x2 > b.x1 and b.y2 > b.y1):
        raise OptionError("face_hint must be a finite box with x2 > x1 and y2 > y1")
    return box


def parsing_mode(value: str) -> str:
    if value not in ("",) + PARSING_MODES:
        raise OptionError(f"unknown parsing_mode {value!r}; use {' or '.join(PARSING_MODES)}")
    return value or PARSING_MODES[0]


def optional_int(msg, name: str) -> int:
    """An optional integer field of msg: its own value checked against the table, or the table's default."""
    return int(check(name, getattr(msg, name)) if msg.HasField(name) else OPTIONS[name].default)


def check_face_options(o) -> None:
    """The face-preparation fields LipsyncOptions and PrepareOptions share."""
    model_version(o.model_version)
    check("bbox_shift", o.bbox_shift)
    parsing_mode(o.parsing_mode)
    for name in ("left_cheek_width", "right_cheek_width"):
        optional_int(o, name)
    if o.HasField("extra_margin"):
        check("extra_margin", o.extra_margin)
    if o.HasField("face_index"):
        check("face_index", o.face_index)
    if o.HasField("face_hint"):
        face_hint(o.face_hint)


def check_request(o: common_pb2.LipsyncOptions) -> None:
    """Every field of a request's options, against the table (raises OptionError)."""
    if o.engine not in ENGINES and o.engine != "":
        raise OptionError(f"unknown engine {o.engine!r}; choose {', '.join(ENGINES)}")
    check_face_options(o)
    check("fps", o.fps)
    codec(o.codec)
    priority(o.priority)
    crf(o)


def frame_count(num_samples: int, sample_rate: int, fps: float) -> int:
    """Output frames for an audio track: floor(duration x fps), at least one for non-empty audio. Exact where
    MuseTalk's float product is not (18,560 samples at 16 kHz and 25 fps: 29 here, 28 there; README)."""
    if num_samples <= 0:
        return 0
    return max(1, math.floor(num_samples / sample_rate * fps + 1e-9))
