"""MuseTalk in one file: the official checkpoints, their audio window, one UNet step, VAE decode.

Follows MuseTalk's inference (v1.0 and v1.5 share it at upstream HEAD):
- crops are 256x256 RGB; the VAE sees x/255 with the lower half (rows 128-255) zeroed for the masked copy,
  then normalised to [-1, 1]; latents = scaling_factor x posterior; UNet input = [masked | reference] (8 ch).
- audio: 16 kHz mono, split in 30 s segments, whisper-tiny log-mel per segment, every encoder hidden state
  (5 x 384 at 50 Hz) stacked; frame i takes ten 50 Hz steps starting at floor(i x 50 / int(fps)) of the
  features padded with 2 x ceil(50 / int(fps)) zero steps in front (and enough behind) -> 50 x 384 tokens,
  plus a sinusoidal positional encoding.
- one UNet pass at timestep 0, decode (1 / scaling_factor) x prediction, (x / 2 + 0.5).clamp(0, 1).

The one deliberate difference: MuseTalk encodes with `latent_dist.sample()` (random, unseeded). We default to
the posterior's mode (deterministic, what MuseTalk's own training uses); `latent="sample"` with a seed gives
MuseTalk's behaviour reproducibly.
"""
from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from services.generator.engines.musetalk.fast.cuda_graphs import SharedPoolGraphs
from services.generator.engines.musetalk.fast.fused_groupnorm import fuse_groupnorm_silu, self_check
from services.generator.engines.musetalk.fast.phase_upsample import replace_upsamplers
from services.generator.engines.musetalk.fast.tap_conv import replace_conv_out

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000
AUDIO_FPS = 50          # whisper encoder steps per second
SEGMENT_S = 30          # whisper's window
PAD_LEFT = PAD_RIGHT = 2
WHISPER_BUCKETS = (1, 2, 4, 8, 16)   # 30 s windows per whisper pass (a graph each when they are on)


@dataclass(frozen=True)
class MuseTalkFiles:
    unet_weights: str
    unet_config: str
    vae_dir: str
    whisper_dir: str

    @classmethod
    def layout(cls, models_dir: str, version: str) -> "MuseTalkFiles":
        sub, weights = ("musetalkV15", "unet.pth") if version == "v15" else ("musetalk", "pytorch_model.bin")
        return cls(os.path.join(models_dir, sub, weights), os.path.join(models_dir, sub, "musetalk.json"),
                   os.path.join(models_dir, "sd-vae"), os.path.join(models_dir, "whisper"))


class PositionalEncoding(nn.Module):
    """Sinusoidal encoding added to the 50 audio tokens (MuseTalk's, d_model 384)."""

    def __init__(self, d_model: int = 384, max_len: int = 5000):
        super().__init__()
        pe = torch.zeros(max_len, d_model)
        position = torch.arange(0, max_len, dtype=torch.float).unsqueeze(1)
        div_term = torch.exp(torch.arange(0, d_model, 2).float() * (-math.log(10000.0) / d_model))
        pe[:, 0::2] = torch.sin(position * div_term)
        pe[:, 1::2] = torch.cos(position * div_term)
        self.register_buffer("pe", pe.unsqueeze(0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.pe[:, : x.shape[1], :].to(x.device, x.dtype)


def fuse_decoder(decoder: nn.Module, norms: bool = True) -> None:
    """The GPU path's decoder: its memory-bound passes rewired (the same function, the same state-dict keys):
    GroupNorm + SiLU in Triton, with conv1's bias inside norm2 and each residual sum inside the next norm's pass
    (fused_groupnorm.py); the 3-channel output convolution as one 1x1 convolution per tap (tap_conv.py); the
    mid-block attention (one head of 512 channels) as plain matrix products, faster here than the fused kernels."""
    from diffusers.models.attention_processor import AttnProcessor

    if norms:
        fuse_groupnorm_silu(decoder)
    replace_conv_out(decoder)
    for attn in decoder.mid_block.attentions:
        attn.set_processor(AttnProcessor())


def load_unet(files: MuseTalkFiles):
    from diffusers import UNet2DConditionModel

    with open(files.unet_config) as f:
        config = json.load(f)
    unet = UNet2DConditionModel(**{k: v for k, v in config.items() if not k.startswith("_")})
    unet.load_state_dict(torch.load(files.unet_weights, map_location="cpu", weights_only=True))
    return unet.eval().requires_grad_(False)


def load_vae(files: MuseTalkFiles):
    from diffusers import AutoencoderKL

    return AutoencoderKL.from_pretrained(files.vae_dir).eval().requires_grad_(False)


def load_whisper(files: MuseTalkFiles):
    from transformers import WhisperFeatureExtractor, WhisperModel

    extractor = WhisperFeatureExtractor.from_pretrained(files.whisper_dir)
    encoder = WhisperModel.from_pretrained(files.whisper_dir).encoder.eval().requires_grad_(False)
    return extractor, encoder


def whisper_windows(features: torch.Tensor, num_samples: int, fps: float, num_frames: int | None = None,
                    left: int = PAD_LEFT, right: int = PAD_RIGHT, first: int = 0, start_step: int = 0) -> torch.Tensor:
    """(1, T50, 5, 384) encoder states -> (frames, 50, 384) audio tokens, MuseTalk's window per frame.

    num_frames defaults to MuseTalk's floor(seconds x int(fps)); more frames may be asked for (a fractional
    fps), and get the same window rule with zeros past the end. first: only frames first..num_frames-1 (a live
    session's newest frames); start_step: the features begin at this 50 Hz step of the whole audio (a live window
    that starts on a 30 s segment boundary), num_samples being the window's.
    """
    fps_i = int(fps)
    step = AUDIO_FPS / fps_i
    per_frame = 2 * (left + right + 1)
    if num_frames is None:
        num_frames = math.floor(num_samples / SAMPLE_RATE * fps_i)
    actual = math.floor(num_samples / SAMPLE_RATE * AUDIO_FPS)
    feats = features[:, :actual]
    pad = math.ceil(step)
    last = math.floor(max(num_frames - 1, 0) * step) - start_step + per_frame   # the furthest step any frame reads
    behind = max(pad * 3 * right, last - pad * left - feats.shape[1])
    zeros = feats.new_zeros
    feats = torch.cat([zeros((1, pad * left) + feats.shape[2:]), feats, zeros((1, behind) + feats.shape[2:])], 1)
    # made on the features' device (an index from host memory would wait for the stream); float64 floors as
    # math.floor(i * step) does
    frames = torch.arange(first, num_frames, dtype=torch.float64, device=feats.device)
    index = torch.floor(frames * step).long() - start_step
    windows = feats[0][index[:, None] + torch.arange(per_frame, device=feats.device)[None, :]]   # (frames, 10, 5, 384)
    return windows.reshape(len(index), per_frame * windows.shape[2], windows.shape[3])


class MuseTalk:
    """Loaded once; `encode_crops`, `audio_tokens` and `generate` run many times."""

    def __init__(self, files: MuseTalkFiles, device: str = "cpu", dtype: torch.dtype = torch.float32,
                 latent: str = "mode", seed: int = 0, compile: bool = False, phase_upsample: bool = True,
                 fused_kernels: bool | None = None, fused_unet: bool = False, decode_chunk: int = 0,
                 whisper_graphs: bool = False):
        if latent not in ("mode", "sample"):
            raise ValueError("latent must be 'mode' or 'sample'")
        self.device, self.dtype, self.latent = torch.device(device), dtype, latent
        if decode_chunk < 0:
            raise ValueError("decode_chunk must be >= 0 (0 = the whole batch at once)")
        self.decode_chunk = decode_chunk
        self.generator = torch.Generator(device=self.device).manual_seed(seed)
        self.unet = load_unet(files).to(self.device, dtype)
        self.vae = load_vae(files).to(self.device, dtype)
        self.extractor, self.whisper = load_whisper(files)
        self.whisper = self.whisper.to(self.device, dtype)
        self.pe = PositionalEncoding().to(self.device)
        if phase_upsample:   # same function, 2.25x fewer FLOPs in the upsampling convolutions (phase_upsample.py)
            replace_upsamplers(self.unet)
            replace_upsamplers(self.vae.decoder)
        if fused_kernels is None:
            fused_kernels = self.device.type == "cuda"
        # which fast paths are on, for the logs (the kernels are checked on this device first)
        self.fused_detail = "off"
        if fused_kernels:
            problem = self_check(self.device, dtype) if self.device.type == "cuda" else None
            if problem:
                log.warning("Triton GroupNorm kernels not used on %s: %s", self.device, problem)
            self.fused_detail = f"GroupNorm kernels not used: {problem}" if problem else "on"
            fuse_decoder(self.vae.decoder, norms=not problem)
            if fused_unet and not problem:     # the UNet's norms too (lanes padded for its 10-80 channels a group); off by default:
                # no gain measured (BENCHMARKS.md, 2026-11-25)
                fuse_groupnorm_silu(self.unet)
                replace_conv_out(self.unet)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True    # fixed shapes: let cuDNN time its convolution algorithms
        self.scaling = float(self.vae.config.scaling_factor)
        self.timestep = torch.tensor([0], device=self.device)
        mask = torch.zeros(256, 256)
        mask[:128] = 1
        self.mask = mask.to(self.device)
        self._unet = lambda x, c: self.unet(x, self.timestep, encoder_hidden_states=c).sample
        self._decode = lambda z: self.vae.decode(z).sample
        self._generate_u8 = self._forward_uint8
        self._mel_consts = None
        self.whisper_buckets = self.device.type == "cuda"   # the side work at bucket counts of rows
        # whisper's encoder replayed from one CUDA graph per bucket of WHISPER_BUCKETS windows (a pool of their
        # own: the side thread runs them beside the batcher's graphs): one launch instead of ~80 modules' Python
        # dispatch per pass. Off by default: no gain in the service, +554 MiB (BENCHMARKS.md, 2026-12-01)
        self._whisper_graphs = (SharedPoolGraphs(self._encoder_states)
                                if whisper_graphs and self.device.type == "cuda" else None)
        if compile:
            # channels_last + inductor: about 1.7x eager on an H100 at batch 64 (see BENCHMARKS.md)
            self.unet.to(memory_format=torch.channels_last)
            self.vae.to(memory_format=torch.channels_last)
            # PE + UNet + decode + uint8 compiled as one function; on CUDA replayed as one CUDA graph per batch
            # size (one launch per batch, so a busy host cannot starve the GPU), the graphs sharing one pool
            self._generate_u8 = torch.compile(self._forward_uint8, dynamic=False)
            if self.device.type == "cuda":
                self._generate_u8 = SharedPoolGraphs(self._generate_u8)

    def _forward_uint8(self, latents: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        pred = self.unet(latents, self.timestep, encoder_hidden_states=self.pe(tokens)).sample
        z = self._unscale(pred)
        # the decoder's 256x256 activations are most of the memory: decoding `decode_chunk` frames at a time
        # bounds them (the same frames: each frame is decoded on its own, GroupNorm works per frame)
        step = self.decode_chunk or len(z)
        return torch.cat([self._post(self.vae.decode(z[i:i + step]).sample).mul(255).round().to(torch.uint8)
                          for i in range(0, len(z), step)])

    @torch.no_grad()
    def encode_crops(self, crops: np.ndarray) -> torch.Tensor:
        """uint8 RGB [N, 256, 256, 3] -> [N, 8, 32, 32] latents: masked crop, then the full crop.

        One crop at a time and with MuseTalk's arithmetic (float64 /255, then (x - 0.5) / 0.5), so the latents
        match theirs to the last bits the kernels allow; this runs once per source (the result is cached)."""
        out = []
        for crop in crops:
            x = torch.from_numpy(np.ascontiguousarray(crop).transpose(2, 0, 1) / 255.0).float().to(self.device)
            pair = []
            for image in (x * (self.mask > 0.5), x):
                dist = self.vae.encode(((image - 0.5) / 0.5).unsqueeze(0).to(self.dtype)).latent_dist
                z = dist.mode() if self.latent == "mode" else dist.sample(generator=self.generator)
                pair.append(self.scaling * z)
            out.append(torch.cat(pair, dim=1))
        return torch.cat(out)

    def _encoder_states(self, mels: torch.Tensor) -> torch.Tensor:
        return torch.stack(self.whisper(mels, output_hidden_states=True).hidden_states, dim=2)

    @torch.no_grad()
    def encode_mels(self, mels: torch.Tensor) -> torch.Tensor:
        """(segments, 80, 3000) -> (segments, 1500, 5, 384): every whisper encoder state of each segment, in one
        pass (segments of several requests go through together)."""
        mels = mels.to(self.device, self.dtype)
        size = next((b for b in WHISPER_BUCKETS if b >= len(mels)), None)
        if size is None or not (self.whisper_buckets or self._whisper_graphs is not None):
            return self._encoder_states(mels)
        n = len(mels)
        # padded to the bucket: a graph per bucket, not per count; eager on a GPU, the shapes warmed at start
        # (a new count of rows builds cuDNN plans for the encoder's convolutions on a request's path)
        if size > n:
            mels = torch.cat([mels, mels.new_zeros((size - n,) + tuple(mels.shape[1:]))])
        if self._whisper_graphs is None:
            return self._encoder_states(mels)[:n]
        return self._whisper_graphs(mels)[:n].clone()     # the graph's output is overwritten by its next replay

    def warm_whisper(self) -> None:
        """The side work's shapes at every bucket now, not on a request's first pass: the FFT plans of the log-mel
        (py-spy showed the first burst of 8 requests waiting ~1 s in stft; live sessions gather any count), the
        encoder at each bucket's count of rows, and its graphs when they are on."""
        if self.device.type != "cuda":
            return
        for size in reversed(WHISPER_BUCKETS):
            self.encode_mels(self.log_mels([np.zeros(SAMPLE_RATE, np.float32)] * size))
        torch.cuda.synchronize(self.device)

    @torch.no_grad()
    def audio_features(self, audio: np.ndarray) -> torch.Tensor:
        """16 kHz mono float32 -> (1, T50, 5, 384): every whisper encoder state, 30 s segment by segment."""
        seg = SEGMENT_S * SAMPLE_RATE
        parts = []
        for start in range(0, max(len(audio), 1), seg):
            mel = self.extractor(audio[start:start + seg], sampling_rate=SAMPLE_RATE, return_tensors="pt").input_features
            parts.append(self.encode_mels(mel))
        return torch.cat(parts, dim=1)

    def audio_tokens(self, audio: np.ndarray, fps: float, num_frames: int | None = None) -> torch.Tensor:
        return whisper_windows(self.audio_features(audio), len(audio), fps, num_frames)

    def log_mels(self, pieces: list[np.ndarray]) -> torch.Tensor:
        """Whisper's log-mel inputs of audio pieces of at most 30 s (each padded to 30 s): (pieces, 80, 3000), on
        the model's device in one batched STFT. The feature extractor's own filters, window and steps (its torch
        path, restated for a batch that stays on the device: tests compare the two)."""
        e, n = self.extractor, SEGMENT_S * SAMPLE_RATE
        # on a GPU the STFT runs on a bucket's count of rows (zeros past the pieces): an FFT plan per bucket, made
        # at warm-up, where a new count of pieces would make one on a request's path
        rows = len(pieces)
        if self.whisper_buckets:
            rows = next((b for b in WHISPER_BUCKETS if b >= rows), rows)
        if self._mel_consts is None:         # on the device once: a copy from host memory waits for the stream
            self._mel_consts = (torch.hann_window(e.n_fft, device=self.device),
                                torch.from_numpy(e.mel_filters).to(self.device, torch.float32).T.contiguous())
        window, filters = self._mel_consts
        # the pieces back to back in one pinned host buffer, one copy that does not wait (a copy from pageable
        # memory syncs the stream), then padded with zeros on the device (no 30 s of zeros written on the host)
        pieces = [p[:n] for p in pieces]
        ends = np.cumsum([len(p) for p in pieces])
        pinned = self.device.type == "cuda"
        host = torch.empty(int(ends[-1]) if len(ends) else 0, dtype=torch.float32, pin_memory=pinned)
        if len(ends):
            np.concatenate(pieces, out=host.numpy(), casting="same_kind")
        flat = host.to(self.device, non_blocking=pinned)
        x = torch.zeros(rows, n, device=self.device)
        for i, (p, end) in enumerate(zip(pieces, ends)):
            x[i, :len(p)] = flat[end - len(p):end]
        power = torch.stft(x, e.n_fft, e.hop_length, window=window, return_complex=True)[..., :-1].abs() ** 2
        mel = filters @ power
        log = torch.clamp(mel, min=1e-10).log10()
        log = torch.maximum(log, log.amax(dim=(1, 2), keepdim=True) - 8.0)
        return ((log + 4.0) / 4.0)[:len(pieces)]

    def audio_tokens_many(self, requests: list[tuple], max_segments: int = WHISPER_BUCKETS[-1]) -> list:
        """audio_tokens of several requests ((audio, fps, frames) or (audio, fps, frames, first, start_step) each:
        tokens of frames first..frames-1, see whisper_windows) with one log-mel pass and one whisper pass per max_segments 30 s segments: a
        burst of new requests (or of live sessions' windows) costs one encoder call instead of one each."""
        seg = SEGMENT_S * SAMPLE_RATE
        pieces = [[r[0][s:s + seg] for s in range(0, max(len(r[0]), 1), seg)] for r in requests]
        flat = [p for ps in pieces for p in ps]
        states = torch.cat([self.encode_mels(self.log_mels(flat[i:i + max_segments]))
                            for i in range(0, len(flat), max_segments)])
        out, at = [], 0
        for (audio, fps, frames, *live), ps in zip(requests, pieces):
            features = states[at:at + len(ps)].reshape(1, len(ps) * states.shape[1], *states.shape[2:])
            first, start_step = live if live else (0, 0)
            out.append(whisper_windows(features, len(audio), fps, frames, first=first, start_step=start_step))
            at += len(ps)
        return out

    @torch.no_grad()
    def generate(self, latents: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """[B, 8, 32, 32] latents + [B, 50, 384] audio tokens -> decoded crops, float [B, 256, 256, 3] in 0..1."""
        audio = self.pe(tokens.to(self.device, self.dtype))
        pred = self._unet(latents.to(self.device, self.dtype), audio)
        return self._post(self._decode(self._unscale(pred)))

    def _unscale(self, pred: torch.Tensor) -> torch.Tensor:
        """UNet prediction -> VAE latents, as MuseTalk's decode_latents does: (1 / scaling_factor) * latents (a
        multiplication by the rounded inverse, not a division: the last bit can differ)."""
        return ((1 / self.scaling) * pred).to(self.dtype)

    @torch.no_grad()
    def generate_uint8(self, latents: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Same as `generate`, as uint8 [B, 256, 256, 3] RGB on the model's device: what the engine runs (one
        compiled graph on the GPU). The result is valid until the next call (CUDA graphs reuse its buffer)."""
        return self._generate_u8(latents.to(self.device, self.dtype), tokens.to(self.device, self.dtype))

    @staticmethod
    def _post(image: torch.Tensor) -> torch.Tensor:
        return (image.float() / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1)

    @staticmethod
    def to_uint8(images: torch.Tensor) -> np.ndarray:
        return (images * 255).round().to(torch.uint8).cpu().numpy()

    def generate_to_host(self, parts: list) -> "HostCopy":
        """Run parts of one batch and start copying their crops to the host as one array (HostCopy). On CUDA the
        copy goes into one of three reused pinned buffers, queued on the stream behind the work, so the next batch
        can be launched before this one is collected (the batcher keeps at most two batches in flight). Each part is
        (latents, tokens, rows): generate_uint8 on those inputs (padded to a compiled size), of which the first
        `rows` crops are kept; or (None, None, crops) for crops already made. On CUDA each part's copy is queued
        before the next part runs: a CUDA graph's output buffer is overwritten by its next replay."""
        def run(lat, tok, rows):
            return rows if lat is None else self.generate_uint8(lat, tok)[:rows]

        if self.device.type != "cuda":
            return HostCopy(np.concatenate([run(*p).numpy() for p in parts]), None)
        total = sum(len(p[2]) if p[0] is None else p[2] for p in parts)
        stream = torch.cuda.current_stream(self.device)
        # the start event runs when the stream reaches this batch: end - start is its own time, not its wait
        start = torch.cuda.Event(enable_timing=True)
        start.record(stream)
        buf, at = None, 0
        for part in parts:
            crops = run(*part)
            if buf is None:
                ring = getattr(self, "_pinned_ring", None)
                if ring is None or ring[0].shape[0] < total:
                    ring = self._pinned_ring = [torch.empty((total,) + tuple(crops.shape[1:]), dtype=torch.uint8,
                                                            pin_memory=True) for _ in range(3)]
                    self._ring_next = 0
                buf = ring[self._ring_next][:total]
                self._ring_next = (self._ring_next + 1) % len(ring)
            buf[at:at + len(crops)].copy_(crops, non_blocking=True)
            at += len(crops)
        event = torch.cuda.Event(blocking=True, enable_timing=True)   # a waiting thread sleeps, not spins
        event.record(stream)
        return HostCopy(buf.numpy(), event, start)

    def to_host(self, crops: torch.Tensor) -> np.ndarray:
        """Copy uint8 crops to the host through a reused pinned buffer (on CUDA), then one numpy array."""
        if crops.device.type != "cuda":
            return crops.numpy()
        buf = getattr(self, "_pinned", None)
        if buf is None or buf.shape[0] < crops.shape[0]:
            buf = self._pinned = torch.empty(crops.shape, dtype=torch.uint8, pin_memory=True)
        out = buf[:crops.shape[0]]
        out.copy_(crops, non_blocking=True)
        torch.cuda.current_stream(crops.device).synchronize()
        return out.numpy().copy()


class HostCopy:
    """Crops on their way to the host: `done()` without waiting, `()` waits and returns a numpy copy. `gpu_s()`
    (once done): the batch's own time on the device, from the stream reaching it to its copy done (0 on the CPU)."""

    def __init__(self, array: np.ndarray, event, start=None):
        self.array, self.event, self.start = array, event, start

    def gpu_s(self) -> float:
        return 0.0 if self.start is None else self.start.elapsed_time(self.event) / 1000

    def done(self) -> bool:
        return self.event is None or self.event.query()

    def __call__(self) -> np.ndarray:
        if self.event is None:
            return self.array
        self.event.synchronize()
        return self.array.copy()
