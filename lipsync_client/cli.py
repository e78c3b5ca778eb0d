"""`lipsync` command line: run a lip-sync job against the gateway, or manage asynchronous jobs."""
from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time

from tqdm import tqdm

from lipsync.v1 import common_pb2, gateway_pb2
from lipsync_client.client import LipsyncClient, LipsyncError
from lipsync_client.live_cli import run_live
from lipsync_common import options

VERSIONS = options.VERSION_BY_NAME
PRIORITIES = options.PRIORITY_BY_NAME


def _options(args) -> common_pb2.LipsyncOptions:
    o = common_pb2.LipsyncOptions(model_version=VERSIONS[args.version], bbox_shift=args.bbox_shift,
                                  parsing_mode=args.parsing_mode)
    for name in ("extra_margin", "left_cheek_width", "right_cheek_width"):
        if getattr(args, name) is not None:
            setattr(o, name, getattr(args, name))
    if hasattr(args, "engine"):           # run and submit; preview prepares the face only
        o.engine, o.fps, o.priority = args.engine, args.fps, PRIORITIES[args.priority]
        if args.crf is not None:
            o.crf = args.crf
        if args.lossless:
            o.codec = common_pb2.VIDEO_CODEC_H264_LOSSLESS_RGB
    return o


def _helped(name: str) -> str:
    o = options.OPTIONS[name]
    return f"{o.help}; {o.lo:g} to {o.hi:g}, default {o.default:g}" + (f" (0: {o.zero})" if o.zero else "")


def _add_face(p: argparse.ArgumentParser, required: bool = True) -> None:
    """The face and how it is prepared (run, submit, preview, live)."""
    src = p.add_mutually_exclusive_group(required=required)
    src.add_argument("--video", help="face video (mp4, mov, mkv, webm...)")
    src.add_argument("--image", help="one face image (png, jpg...)")
    p.add_argument("--version", default="v15", choices=sorted(VERSIONS))
    p.add_argument("--bbox-shift", type=int, default=int(options.OPTIONS["bbox_shift"].default),
                   help=_helped("bbox_shift"))
    p.add_argument("--extra-margin", type=int, default=None, help=_helped("extra_margin"))
    p.add_argument("--parsing-mode", default="", choices=["", *options.PARSING_MODES],
                   help="face-parsing blend region (BiSeNet weights installed; default jaw)")
    p.add_argument("--left-cheek-width", type=int, default=None, help=_helped("left_cheek_width"))
    p.add_argument("--right-cheek-width", type=int, default=None, help=_helped("right_cheek_width"))


class Progress:
    """Each stage's progress on stderr with tqdm: frames done of the total, frames/s and the time left. Silent when
    stderr is not a terminal (logs, pipes) unless LIPSYNC_PROGRESS=1, and with --quiet."""

    def __init__(self, quiet: bool, file=None):
        self.file = file or sys.stderr
        self.quiet = quiet or (not self.file.isatty() and os.environ.get("LIPSYNC_PROGRESS") != "1")
        self.stage = ""
        self.bar = None

    def __call__(self, p: common_pb2.Progress) -> None:
        if self.quiet:
            return
        stage = common_pb2.Stage.Name(p.stage).removeprefix("STAGE_").lower()
        if stage != self.stage:
            self.close()
            self.stage = stage
            self.bar = tqdm(total=p.total or None, desc=f"{stage:<10}", unit="frame", file=self.file,
                            dynamic_ncols=True, leave=stage in ("generate", "render", "done"))
        if p.total and self.bar.total != p.total:
            self.bar.total = p.total
            self.bar.refresh()
        if p.done > self.bar.n:
            self.bar.update(p.done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _add_media(p: argparse.ArgumentParser) -> None:
    _add_face(p)
    p.add_argument("--audio", required=True, help="speech audio (wav, mp3, m4a, flac, ogg)")
    p.add_argument("--engine", default="auto", choices=list(options.ENGINES))
    p.add_argument("--fps", type=float, default=float(options.OPTIONS["fps"].default), help=_helped("fps"))
    p.add_argument("--crf", type=int, default=None, help=_helped("crf"))
    p.add_argument("--lossless", action="store_true", help="lossless RGB H.264 (large; for checks)")
    p.add_argument("--priority", default="default", choices=sorted(PRIORITIES),
                   help="share of the GPU under load (default: interactive for run, batch for submit)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lipsync", description=__doc__)
    parser.add_argument("--token", default=os.environ.get("LIPSYNC_TOKEN", ""),
                        help="the gateway's bearer token (default: $LIPSYNC_TOKEN)")
    parser.add_argument("--target", default=os.environ.get("LIPSYNC_TARGET", "127.0.0.1:50051"),
                        help="gateway address (env LIPSYNC_TARGET)")
    sub = parser.add_subparsers(dest="cmd", required=True)
    run = sub.add_parser("run", help="lip-sync and write the MP4 (streams the result as it is made)")
    _add_media(run)
    run.add_argument("--out", required=True)
    run.add_argument("--quiet", action="store_true")
    preview = sub.add_parser("preview", help="prepare the face and write its first frame with a face, with the "
                             "crop box, blend mask and landmarks drawn, as a PNG; prints MuseTalk's bbox_shift range")
    _add_face(preview)
    preview.add_argument("--out", required=True, help="the PNG to write")
    submit = sub.add_parser("submit", help="submit an asynchronous job; prints its id")
    _add_media(submit)
    for name in ("status", "cancel"):
        sub.add_parser(name).add_argument("job_id")
    live = sub.add_parser("live", help="a live session: stream the audio at real-time pace (--realtime) and write "
                          "the frames that come back; prints latency percentiles")
    _add_face(live, required=False)
    live.add_argument("--source-id", default="", help="a prepared avatar instead of --video/--image")
    live.add_argument("--audio", required=True, help="an audio file (WAV, MP3, ...; 16-bit mono WAV without PyAV), or - for "
                      "16-bit mono PCM on stdin (--rate)")
    live.add_argument("--rate", type=int, default=16000, help="sample rate of PCM on stdin")
    live.add_argument("--realtime", action="store_true", help="send the audio at the pace it would be spoken")
    live.add_argument("--out", required=True, help="the video (fragmented MP4); its audio goes to OUT.wav")
    live.add_argument("--engine", default="auto", help="auto, warp, visemes, loudness or musetalk")
    live.add_argument("--fps", type=float, default=0.0, help="output frame rate (0: the source's, 25 for an image)")
    live.set_defaults(crf=None, lossless=False, priority="default")
    dl = sub.add_parser("download", help="download a finished job's MP4")
    dl.add_argument("job_id")
    dl.add_argument("--out", required=True)
    dl.add_argument("--wait", action="store_true", help="wait until the job ends")
    return parser


def _run(client: LipsyncClient, args) -> None:
    bar = Progress(args.quiet)
    t0 = time.perf_counter()
    s = client.lipsync(args.video or args.image, args.audio, args.out, _options(args), on_progress=bar)
    bar.close()
    print(f"wrote {args.out}: {s.frames} frames, {s.duration_s:.2f} s at {s.fps:g} fps, "
          f"{s.width}x{s.height}, engine {s.engine} ({time.perf_counter() - t0:.1f} s)")
    if s.engine_detail:
        print(f"  driven by: {s.engine_detail}")


def _preview(client: LipsyncClient, args) -> None:
    p = client.preview(args.video or args.image, _options(args))
    with open(args.out, "wb") as f:
        f.write(p.png)
    b, r = p.crop_box, p.bbox_shift_range
    print(f"wrote {args.out}: source frame {p.frame}, crop box ({b.x1:g}, {b.y1:g})-({b.x2:g}, {b.y2:g})")
    print(f"bbox_shift range: [{r.min}, {r.max}] (the current value: {args.bbox_shift})")


def _download(client: LipsyncClient, args) -> None:
    while args.wait and client.get_job(args.job_id).state in (
            gateway_pb2.JOB_STATE_QUEUED, gateway_pb2.JOB_STATE_RUNNING):
        time.sleep(0.5)
    print(f"wrote {args.out}: {client.download_result(args.job_id, args.out)} bytes")


COMMANDS = {
    "run": _run,
    "preview": _preview,
    "submit": lambda c, a: print(c.submit_job(a.video or a.image, a.audio, _options(a)).job_id),
    "status": lambda c, a: print(gateway_pb2.JobState.Name((j := c.get_job(a.job_id)).state).removeprefix(
        "JOB_STATE_"), j.error),
    "cancel": lambda c, a: print(gateway_pb2.JobState.Name(c.cancel_job(a.job_id).state).removeprefix("JOB_STATE_")),
    "download": _download,
    "live": lambda c, a: asyncio.run(run_live(a, _options(a))),
}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    with LipsyncClient(args.target, token=args.token) as client:
        try:
            COMMANDS[args.cmd](client, args)
        except (LipsyncError, OSError, ValueError) as e:
            print(f"lipsync: {e}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
