"""Media input with PyAV: probe and decode face media (video or image) and audio. Frames of a prepared source are
read again by `frames.FrameReader`; output MP4s are written by `mp4.Mp4Writer`."""
from __future__ import annotations

import itertools
import logging
import wave
import zlib
from dataclasses import dataclass
from typing import Iterator

import av
import numpy as np

log = logging.getLogger("media")

# Demuxers that read a single still image.
_IMAGE_FORMATS = {"image2", "png_pipe", "jpeg_pipe", "webp_pipe", "bmp_pipe", "tiff_pipe", "gif", "jpegls_pipe"}


class MediaError(ValueError):
    """Media that cannot be used; the message says why in words a user can act on."""


@dataclass
class VideoInfo:
    width: int
    height: int
    fps: float          # 0 for a still image
    is_image: bool
    frames_hint: int    # from the container; may be 0 when unknown
    rotation: int = 0   # display rotation applied to the decoded frames (counter-clockwise degrees)


def _open(path: str, what: str):
    try:
        return av.open(path, mode="r")
    except av.FFmpegError as e:  # PyAV raises subclasses of this for unreadable input
        raise MediaError(f"{what} could not be opened as a media file: {e}") from None
    except Exception as e:  # noqa: BLE001 - anything else from the demuxer is bad input too
        raise MediaError(f"{what} could not be opened as a media file: {e}") from None


def _open_face(path: str, max_pixels: int, threads: int = 0):
    """Open face media and decode its first frame: (container, stream, info, first frame, the rest).
    The one way face media is opened, for read_face_media and FrameReader alike (same decoder settings)."""
    container = _open(path, "the face media")
    if not container.streams.video:
        container.close()
        raise MediaError("the face media has no video or image stream")
    stream = container.streams.video[0]
    cc = stream.codec_context
    if cc is None:                  # a stream of a codec this ffmpeg cannot decode (seen in fuzzed files)
        container.close()
        raise MediaError("the face media's video stream has no decoder here (unknown or broken codec)")
    width, height = int(cc.width or 0), int(cc.height or 0)
    if width <= 0 or height <= 0:
        animated_webp = container.format.name.startswith("webp")     # ffmpeg's WebP decoder: still images only
        container.close()
        raise MediaError("the face media has no valid frame size"
                         + (" (an animated WebP? only still WebP images are read: send it as a video or a GIF)"
                            if animated_webp else ""))
    if width * height > max_pixels:
        container.close()
        raise MediaError(f"the face media is {width}x{height}, above the limit of {max_pixels} pixels")
    fmt = container.format.name.split(",")[0]
    # an animated GIF is a video (its frames at its own rate); a GIF of one frame is an image
    is_image = fmt in _IMAGE_FORMATS and not (fmt == "gif" and (stream.frames or 0) > 1)
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    fps = 0.0 if is_image else float(rate or 25)
    stream.thread_type = "AUTO"   # ffmpeg's frame + slice threads for decoding
    if threads > 0:               # 0: ffmpeg's choice (about one per core); fewer when many decoders run at once
        stream.codec_context.thread_count = threads
    decoded = container.decode(stream)
    try:
        first = next(decoded, None)
    except av.FFmpegError as e:
        container.close()
        raise MediaError(f"the face media could not be decoded: {e}") from None
    if first is None:
        container.close()
        raise MediaError("the face media contains no decodable frame")
    # phones store portrait video as landscape frames plus a display matrix: frames are turned upright here
    # (counter-clockwise degrees, as the display matrix gives them), so everything downstream sees what a
    # player shows, and the output needs no rotation metadata
    turns = int(round((first.rotation or 0) / 90.0)) % 4
    if turns % 2:
        width, height = height, width
    info = VideoInfo(width, height, fps, is_image, int(stream.frames or 0), rotation=90 * turns)
    return container, stream, info, first, decoded


def _upright_rgb(frame: av.VideoFrame, info: VideoInfo) -> np.ndarray:
    """A decoded frame as the RGB array everything downstream sees (the same conversion everywhere)."""
    img = frame.to_ndarray(format="rgb24")
    turns = info.rotation // 90
    if turns:
        img = np.ascontiguousarray(np.rot90(img, turns))
    if img.shape[0] != info.height or img.shape[1] != info.width:
        raise MediaError("the face media changes frame size mid-stream")
    return img


def read_face_media(path: str, max_pixels: int, max_frames: int,
                    timestamps: bool = False) -> tuple[VideoInfo, Iterator]:
    """Open a face video or image. Returns its info and an iterator of RGB uint8 frames (H, W, 3); with
    timestamps, of (frame, pts, keyframe): the frame's presentation time in the stream's time base (None when
    the container gives none) and whether the decoder marked it a keyframe (where FrameReader may seek to).

    Raises MediaError for empty, corrupt or unsupported files and for limits exceeded.
    """
    container, _, info, first, decoded = _open_face(path, max_pixels)

    def frames() -> Iterator:
        n = 0
        try:
            for frame in itertools.chain([first], decoded):
                if n >= max_frames:
                    raise MediaError(f"the face media has more than {max_frames} frames")
                img = _upright_rgb(frame, info)
                n += 1
                yield (img, frame.pts, bool(frame.key_frame)) if timestamps else img
                if info.is_image:
                    break
        except av.FFmpegError as e:
            if n == 0:
                raise MediaError(f"the face media could not be decoded: {e}") from None
            # A truncated tail: keep the frames that decoded, as players do.
        finally:
            container.close()
        if n == 0:
            raise MediaError("the face media contains no decodable frame")

    return info, frames()


def frame_check(img: np.ndarray) -> int:
    """A cheap fingerprint of a decoded frame (CRC-32 of every 16th pixel of every 16th row, ~0.1 ms at 1080p):
    recorded when a source is prepared, compared by FrameReader to catch a seek that decoded something else."""
    return zlib.crc32(np.ascontiguousarray(img[::16, ::16]))


def decode_audio(path: str, max_seconds: float, sample_rate: int | None = None,
                 mono: bool = False) -> tuple[np.ndarray, int]:
    """Decode audio to float32 [channels, samples] (full scale = 1.0) at `sample_rate` (native when None).

    At most two channels are kept (more are downmixed to stereo). `mono` takes (L+R)/2, the service's one
    downmix rule: what syncnet_python's ``ffmpeg -ac 1 -acodec pcm_s16le`` gives (swresample normalises its
    1/sqrt(2) matrix for integer output) and what the gateway's channel mean gives. PyAV's float resampler
    would keep (L+R)/sqrt(2), so the channels are decoded as they are and averaged here.
    """
    decoded = _pcm16_wav(path, max_seconds, sample_rate)
    audio, rate = decoded if decoded is not None else _decode_audio_av(path, max_seconds, sample_rate)
    if mono and audio.shape[0] > 1:
        audio = (0.5 * (audio[0] + audio[1]))[None, :]
    return audio, rate


def _pcm16_wav(path: str, max_seconds: float, sample_rate: int | None) -> tuple[np.ndarray, int] | None:
    """A 16-bit PCM WAV of one or two channels at the asked rate, read whole with the standard library: the
    samples PyAV's decoder and resampler give (x / 32768, exact) without their ~150 Python-level frames per 10 s
    (20 ms of the gateway's GIL per request, most of a burst's wait before generating). None for anything else
    (other formats, rates to convert, over the limit, empty), which PyAV decodes with its own errors."""
    try:
        with wave.open(path, "rb") as w:
            rate, channels, frames = w.getframerate(), w.getnchannels(), w.getnframes()
            if (w.getsampwidth() != 2 or channels not in (1, 2) or w.getcomptype() != "NONE" or rate <= 0
                    or sample_rate not in (None, rate) or not 0 < frames <= max_seconds * rate):
                return None
            data = w.readframes(frames)
    except Exception:  # noqa: BLE001 - the standard library's reader raises many kinds on broken files
        return None     # (RuntimeError among them, found by the fuzz test): PyAV decodes them with its own errors
    samples = np.frombuffer(data, "<i2", count=len(data) // (2 * channels) * channels)
    if not len(samples):
        return None
    return samples.reshape(-1, channels).T.astype(np.float32) * np.float32(1 / 32768), rate


def _decode_audio_av(path: str, max_seconds: float, sample_rate: int | None) -> tuple[np.ndarray, int]:
    container = _open(path, "the audio")
    try:
        if not container.streams.audio:
            raise MediaError("the audio file has no audio stream (supported: wav, mp3, m4a/aac, flac, ogg)")
        stream = container.streams.audio[0]
        if stream.codec_context is None:
            raise MediaError("the audio stream has no decoder here (unknown or broken codec)")
        declared = (container.duration or 0) / 1e6
        if declared > max_seconds * 1.05 + 1:   # refuse before decoding what the header says is too long
            raise MediaError(f"the audio is {declared:.0f} s long, above the limit of {max_seconds:.0f} s")
        rate = sample_rate or int(stream.codec_context.sample_rate or 0)
        if rate <= 0:
            raise MediaError("the audio has no valid sample rate")
        channels = 1 if (stream.codec_context.channels or 1) == 1 else 2
        resampler = av.AudioResampler(format="fltp", layout="mono" if channels == 1 else "stereo", rate=rate)
        parts: list[np.ndarray] = []
        total = 0
        limit = int(max_seconds * rate)

        def take(frames):
            nonlocal total
            for f in frames:
                a = f.to_ndarray()
                parts.append(a)
                total += a.shape[1]
                if total > limit:
                    raise MediaError(f"the audio is longer than the limit of {max_seconds:.0f} s")

        try:
            for frame in container.decode(stream):
                take(resampler.resample(frame))
            take(resampler.resample(None))
        except av.FFmpegError as e:
            if total == 0:
                raise MediaError(f"the audio could not be decoded: {e}") from None
    finally:
        container.close()
    if not parts:
        return np.zeros((channels, 0), np.float32), rate
    return np.concatenate(parts, axis=1).astype(np.float32), rate
