"""LSE-D / LSE-C lip-sync metrics, computed as joonson/syncnet_python computes them.

Reference: ``SyncNetModel.py`` (network ``S``) and ``SyncNetInstance.py`` (``evaluate``, ``calc_pdist``,
``loadParameters``) of github.com/joonson/syncnet_python, in the copy that Wav2Lip's evaluation uses
(``evaluation/scores_LSE/SyncNetInstance_calc_scores.py`` of github.com/Rudrabha/Wav2Lip; its numerics are the
same, it returns ``(offset, conf, minval)`` instead of the distance matrix). The weights are the published
``syncnet_v2.model`` (www.robots.ox.ac.uk/~vgg/software/lipsync/data/syncnet_v2.model), expected at
``MODELS_DIR/syncnet/syncnet_v2.model``.

Protocol (what ``lse`` does, step for step as ``SyncNetInstance.evaluate``):

- Video: T face crops, 224x224, **BGR** (the reference reads JPEGs with ``cv2.imread``), 25 fps. The frames are
  stacked to ``[1, 3, T, 224, 224]`` (channel order B, G, R kept), cast to float with **no normalisation**
  (raw 0..255 values). One lip window = 5 consecutive frames ``[v, v+5)``.
- Audio: 16 kHz mono 16-bit PCM (the reference extracts it with ``ffmpeg -ac 1 -acodec pcm_s16le -ar 16000``
  and reads it with ``scipy.io.wavfile``, so the MFCC sees **int16-range values**, not [-1, 1]). The features are
  ``python_speech_features.mfcc(audio, 16000)`` with every default (25 ms window, 10 ms step, 13 cepstra,
  26 filters, nfft 512, pre-emphasis 0.97, lifter 22, c0 replaced by log energy), computed on the whole audio,
  transposed to ``[13, steps]``. One audio window = MFCC steps ``[4v, 4v+20)`` (4 steps of 10 ms per 40 ms
  frame; 20 steps = the same 0.2 s as the 5 frames), shape ``[1, 13, 20]``.
- Length: ``min_length = min(T, floor(len(audio) / 640))`` (640 samples = one frame at 25 fps); windows
  ``v = 0 .. min_length - 6`` (the reference's ``lastframe = min_length - 5`` is an exclusive bound, so it uses
  one window fewer than would fit). Frames or audio past ``min_length`` are ignored.
- Embeddings: ``forward_lip`` / ``forward_aud`` in eval mode, in batches of ``batch_size`` windows (default 20).
- Distances (``calc_pdist``): the audio embeddings are zero-padded by ``vshift`` rows (default 15) at both
  ends; for lip window i and each of the ``2*vshift+1`` offsets k, ``pairwise_distance`` (L2 of the difference,
  with torch's eps 1e-6) to padded audio row ``i + k``, i.e. audio window ``i + k - vshift`` (an all-zero
  embedding where that is outside the clip: the edges are *not* excluded, exactly as the reference).
- ``dists`` = mean over the lip windows, per offset. ``lse_d`` = min of ``dists`` (the reference's "Min dist");
  ``lse_c`` = median(dists) - min (its "Confidence"); ``av_offset`` = vshift - argmin. Sign as syncnet_python:
  ``av_offset = +n`` means video frame t matches the audio of frame t - n (the audio runs n frames *ahead* of
  the picture); an audio track delayed by n frames gives ``-n``. One frame = 40 ms.
- ``frame_conf`` = ``medfilt(median(dists) - d_i, 9)`` where d_i is window i's distance at the best offset
  (the reference's ``fconfm``, with scipy's zero-padded median filter). One value per window, window i
  starting at frame i.

Wav2Lip's scripts report LSE-D = that min distance and LSE-C = that confidence, each averaged over the test
videos (``calculate_scores_LRS.py`` prints "Average Minimum Distance" / "Average Confidence";
``calculate_scores_real_videos.py`` prints ``minval conf`` per face track).

Inputs that are not 25 fps: the reference assumes 25 fps without checking (640 samples and 4 MFCC steps per
frame are hard-coded); its full pipeline (``run_pipeline.py``) first re-encodes the video with ``ffmpeg -r 25``
(frames dropped/duplicated), and the LRS script feeds LRS2/LRS3/LRW clips that are 25 fps already. Any other
rate silently misaligns audio and video, so ``lse`` refuses ``fps != 25``: resample the frames to 25 fps first.

Interpretation (published numbers; a clip is scored, higher LSE-C / lower LSE-D is better sync):

- Real, in-sync video scores roughly LSE-C 6-9 and LSE-D 6-8. Wav2Lip paper (Prajwal et al., ACM MM 2020,
  "A Lip Sync Expert Is All You Need for Speech to Lip Generation In The Wild", arXiv 2008.10010, Table 1),
  "Real Videos" rows as commonly quoted: LRS2 LSE-D 6.736 / LSE-C 7.838, LRS3 6.956 / 7.592, LRW 7.012 / 6.931.
  Those real-video figures were not checked against the paper text; paperswithcode's copy of the same table
  confirms the generated-video scale (LRS2: Wav2Lip LSE-D 6.386, Wav2Lip + GAN LSE-D 6.469, LSE-C ~7.8).
- syncnet_python's own demo clip (``data/example.avi``) reports AV offset 3, Min dist 5.353, Confidence 10.021
  (its README).
- Rule of thumb (not from a cited table): unsynchronised or static mouths give LSE-C near 0-2 and a clearly
  larger LSE-D; an offset far from 0 with a high confidence means a constant A/V shift, not bad lip shapes.

Documented differences from the reference:

- Face crops come from our own landmarks (the caller passes them in), not from syncnet_python's S3FD
  detect-track-and-crop (``run_pipeline.py``: box median-filtered over 13 frames, square side 1.4x the box's
  longer side, shifted down by 0.2x that side, padded with grey 110, resized to 224, written as XVID then
  re-decoded as JPEG). Different crop geometry and no codec round trip change the numbers somewhat; compare
  scores only between runs that used the same crops. (Wav2Lip's LRS script instead feeds whole 25 fps LRS
  frames, ``cv2.resize``d to 224x224.)
- Frames are batched from the uint8 array instead of one float tensor of the whole clip (same values, bounded
  memory). Float audio is quantised to int16 the way ffmpeg's float->s16 conversion does (x * 32768, rounded
  to nearest, clipped), which is what the reference's ffmpeg step would have produced.
"""
from __future__ import annotations

import math
import os
import warnings
from collections.abc import Mapping

import numpy as np
import torch
from torch import nn

SYNCNET_FILE = "syncnet/syncnet_v2.model"
FPS = 25
SAMPLE_RATE = 16000
SAMPLES_PER_FRAME = SAMPLE_RATE // FPS      # 640
MFCC_PER_FRAME = 4                          # 10 ms MFCC steps per 40 ms frame
MFCC_WINDOW = 20                            # steps per audio window (0.2 s)
FRAMES_PER_WINDOW = 5                       # frames per lip window (0.2 s)
CROP = 224


class SyncNetUnavailable(RuntimeError):
    """The SyncNet weights are missing or unusable; the message starts with "unavailable: "."""


class SyncNet(nn.Module):
    """syncnet_python's ``S``: the same modules in the same order, so the state-dict keys and shapes are the
    published file's (``netcnnaud.0.weight`` [64,1,3,3] ... ``netfclip.3.bias`` [1024])."""

    def __init__(self, embedding: int = 1024):
        super().__init__()
        relu = nn.ReLU
        # audio: [N, 1, 13, 20] MFCC windows -> [N, 512, 1, 1]
        self.netcnnaud = nn.Sequential(
            nn.Conv2d(1, 64, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1)), nn.BatchNorm2d(64),
            relu(inplace=True), nn.MaxPool2d(kernel_size=(1, 1), stride=(1, 1)),
            nn.Conv2d(64, 192, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1)), nn.BatchNorm2d(192),
            relu(inplace=True), nn.MaxPool2d(kernel_size=(3, 3), stride=(1, 2)),
            nn.Conv2d(192, 384, kernel_size=(3, 3), padding=(1, 1)), nn.BatchNorm2d(384), relu(inplace=True),
            nn.Conv2d(384, 256, kernel_size=(3, 3), padding=(1, 1)), nn.BatchNorm2d(256), relu(inplace=True),
            nn.Conv2d(256, 256, kernel_size=(3, 3), padding=(1, 1)), nn.BatchNorm2d(256), relu(inplace=True),
            nn.MaxPool2d(kernel_size=(3, 3), stride=(2, 2)),
            nn.Conv2d(256, 512, kernel_size=(5, 4), padding=(0, 0)), nn.BatchNorm2d(512), relu(),
        )
        self.netfcaud = nn.Sequential(nn.Linear(512, 512), nn.BatchNorm1d(512), relu(), nn.Linear(512, embedding))
        self.netfclip = nn.Sequential(nn.Linear(512, 512), nn.BatchNorm1d(512), relu(), nn.Linear(512, embedding))
        # video: [N, 3, 5, 224, 224] BGR 0..255 -> [N, 512, 1, 1, 1]
        self.netcnnlip = nn.Sequential(
            nn.Conv3d(3, 96, kernel_size=(5, 7, 7), stride=(1, 2, 2), padding=0), nn.BatchNorm3d(96),
            relu(inplace=True), nn.MaxPool3d(kernel_size=(1, 3, 3), stride=(1, 2, 2)),
            nn.Conv3d(96, 256, kernel_size=(1, 5, 5), stride=(1, 2, 2), padding=(0, 1, 1)), nn.BatchNorm3d(256),
            relu(inplace=True), nn.MaxPool3d(kernel_size=(1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1)),
            nn.Conv3d(256, 256, kernel_size=(1, 3, 3), padding=(0, 1, 1)), nn.BatchNorm3d(256), relu(inplace=True),
            nn.Conv3d(256, 256, kernel_size=(1, 3, 3), padding=(0, 1, 1)), nn.BatchNorm3d(256), relu(inplace=True),
            nn.Conv3d(256, 256, kernel_size=(1, 3, 3), padding=(0, 1, 1)), nn.BatchNorm3d(256), relu(inplace=True),
            nn.MaxPool3d(kernel_size=(1, 3, 3), stride=(1, 2, 2)),
            nn.Conv3d(256, 512, kernel_size=(1, 6, 6), padding=0), nn.BatchNorm3d(512), relu(inplace=True),
        )

    def forward_aud(self, x: torch.Tensor) -> torch.Tensor:
        mid = self.netcnnaud(x)
        return self.netfcaud(mid.view(mid.size(0), -1))

    def forward_lip(self, x: torch.Tensor) -> torch.Tensor:
        mid = self.netcnnlip(x)
        return self.netfclip(mid.view(mid.size(0), -1))


def published_state_dict(loaded: Mapping, model: nn.Module) -> dict:
    """The published file's mapping, made loadable with ``strict=True``.

    syncnet_python's ``loadParameters`` copies every ``name -> tensor`` of the file into ``S.state_dict()[name]``
    with no renaming, so the file's keys are ``S``'s own names (no prefix). It was saved before BatchNorm had a
    ``num_batches_tracked`` buffer, which never affects eval-mode outputs: those counters, when absent, are taken
    from ``model``. A ``__S__.`` or ``module.`` prefix on every key (a SyncNetInstance / DataParallel dump) is
    stripped; anything else must match exactly."""
    state = {str(k): v for k, v in loaded.items()}
    for prefix in ("__S__.", "module."):
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
    for key, value in model.state_dict().items():
        if key.endswith(".num_batches_tracked") and key not in state:
            state[key] = value.clone()
    return state


def load_syncnet(models_dir: str, device: str | torch.device = "cpu") -> SyncNet:
    """SyncNet v2 with the published weights from ``models_dir/syncnet/syncnet_v2.model``, in eval mode."""
    path = os.path.abspath(os.path.join(models_dir, SYNCNET_FILE))
    if not os.path.isfile(path):
        raise SyncNetUnavailable(f"unavailable: syncnet weights not found at {path}")
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # not a tensor-only pickle, truncated download, ...
        raise SyncNetUnavailable(f"unavailable: syncnet weights at {path} could not be read: {e}") from e
    if not isinstance(loaded, Mapping):
        raise SyncNetUnavailable(f"unavailable: syncnet weights at {path} are not a state dict "
                                 f"({type(loaded).__name__})")
    model = SyncNet()
    try:
        model.load_state_dict(published_state_dict(loaded, model), strict=True)
    except RuntimeError as e:
        raise SyncNetUnavailable(f"unavailable: syncnet weights at {path} do not match syncnet_v2: {e}") from e
    return model.to(device).eval()


def pcm16(audio: np.ndarray) -> np.ndarray:
    """Mono 16 kHz audio as the int16 samples the reference's WAV holds.

    int16 is used as is. Floating point is taken as normalised [-1, 1] and quantised like ffmpeg's float->s16
    conversion (x * 32768, round to nearest even, clip). Float data with a peak above 2 is refused (it is
    almost certainly int16-range samples stored as float: pass them as int16)."""
    a = np.asarray(audio)
    if a.ndim != 1:
        raise ValueError(f"audio must be mono 1-D 16 kHz samples, got shape {a.shape}")
    if a.dtype == np.int16:
        return a
    if not np.issubdtype(a.dtype, np.floating):
        raise TypeError(f"audio must be int16 PCM or float in [-1, 1], got {a.dtype}")
    a = a.astype(np.float64)
    if a.size and not np.isfinite(a).all():
        raise ValueError("audio contains NaN or infinity")
    if a.size and np.abs(a).max() > 2.0:
        raise ValueError("float audio must be normalised to [-1, 1]; int16-range samples must be passed as int16")
    return np.clip(np.rint(a * 32768.0), -32768, 32767).astype(np.int16)


def mfcc_13(audio_int16: np.ndarray) -> np.ndarray:
    """float64 [13, steps]: ``python_speech_features.mfcc(audio, 16000)`` (all defaults), transposed."""
    import python_speech_features

    return np.ascontiguousarray(python_speech_features.mfcc(audio_int16, SAMPLE_RATE).T)


def lse(model: nn.Module, frames_bgr_224: np.ndarray, audio_16k: np.ndarray, vshift: int = 15,
        batch_size: int = 20, *, fps: float = 25.0) -> dict:
    """LSE-D / LSE-C of one face track, exactly as syncnet_python's ``evaluate`` (see the module docstring).

    ``frames_bgr_224``: uint8 [T, 224, 224, 3] BGR face crops at 25 fps (RGB crops: pass ``crops[..., ::-1]``).
    ``audio_16k``: mono 16 kHz, int16 PCM or float in [-1, 1] (quantised to int16 first), aligned with frame 0.
    Returns ``lse_d``, ``lse_c``, ``av_offset`` (frames), ``dists`` (mean distance per offset, index k is audio
    shifted by k - vshift windows), ``frame_conf`` (per window, median-filtered) and ``windows`` (count used).
    The model is put in eval mode; embeddings are computed on the model's device. Different ``batch_size``
    values agree to float32 rounding (~1e-6 on CPU convolutions), as in the reference."""
    if abs(float(fps) - FPS) > 1e-3:
        raise ValueError(f"SyncNet needs 25 fps frames (got {fps}); resample the video to 25 fps first")
    frames = np.asarray(frames_bgr_224)
    if frames.ndim != 4 or frames.shape[1:] != (CROP, CROP, 3):
        raise ValueError(f"frames must be [T, 224, 224, 3] BGR, got shape {frames.shape}")
    vshift, batch_size = int(vshift), int(batch_size)
    if vshift < 0 or batch_size < 1:
        raise ValueError("vshift must be >= 0 and batch_size >= 1")
    audio = pcm16(audio_16k)

    cc = mfcc_13(audio)                                                     # [13, steps], float64
    min_length = min(len(frames), math.floor(len(audio) / SAMPLES_PER_FRAME))
    lastframe = min_length - FRAMES_PER_WINDOW                              # exclusive, as the reference
    if lastframe < 1:
        raise ValueError(f"too short for SyncNet: {len(frames)} frames and {len(audio)} samples give "
                         f"{min_length} usable frames, need at least {FRAMES_PER_WINDOW + 1}")

    model.eval()
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    im_feat, cc_feat = [], []
    with torch.no_grad():
        for i in range(0, lastframe, batch_size):
            vframes = range(i, min(lastframe, i + batch_size))
            # [B, 5, H, W, 3] -> [B, 3, 5, H, W]: the reference's transpose (0, 3, 4, 1, 2) of the stacked clip
            lip = np.stack([frames[v:v + FRAMES_PER_WINDOW] for v in vframes]).transpose(0, 4, 1, 2, 3)
            # uint8 -> float32 is exact (= reference's float()); C-contiguous as the reference's torch.cat of
            # slices makes it (astype keeps the transpose's strides, and conv3d's summation order follows them)
            lip_in = torch.from_numpy(np.ascontiguousarray(lip, dtype=np.float32))
            im_feat.append(model.forward_lip(lip_in.to(device)).cpu())
            aud = np.stack([cc[None, :, MFCC_PER_FRAME * v:MFCC_PER_FRAME * v + MFCC_WINDOW] for v in vframes])
            cc_feat.append(model.forward_aud(torch.from_numpy(aud).float().to(device)).cpu())
        im = torch.cat(im_feat, 0)
        au = torch.cat(cc_feat, 0)

        # calc_pdist
        win_size = vshift * 2 + 1
        au_pad = torch.nn.functional.pad(au, (0, 0, vshift, vshift))
        dists = [torch.nn.functional.pairwise_distance(im[[i], :].repeat(win_size, 1), au_pad[i:i + win_size, :])
                 for i in range(len(im))]
        mdist = torch.mean(torch.stack(dists, 1), 1)
        minval, minidx = torch.min(mdist, 0)
        median = torch.median(mdist)
        offset = vshift - int(minidx)
        conf = median - minval

    from scipy import signal

    fdist = np.stack([d[minidx].numpy() for d in dists])
    fconf = median.numpy() - fdist
    with warnings.catch_warnings():     # fewer than 9 windows: zero-padded, as in the reference; no need to warn
        warnings.filterwarnings("ignore", "kernel_size exceeds volume extent", UserWarning)
        fconfm = signal.medfilt(fconf, kernel_size=9)
    return {
        "lse_d": float(minval),
        "lse_c": float(conf),
        "av_offset": int(offset),
        "dists": [float(x) for x in mdist.numpy()],
        "frame_conf": [float(x) for x in np.asarray(fconfm)],
        "windows": int(lastframe),
    }
