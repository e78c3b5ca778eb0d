"""The MuseTalk path against a literal re-statement of MuseTalk's own inference code, on tiny random weights
saved in the official layout. (Random weights: this checks the plumbing and arithmetic, not lip-sync.)"""
import math
import time

import cv2
import numpy as np
import pytest
import torch

from services.generator.engines.musetalk.model import (MuseTalk, MuseTalkFiles, PositionalEncoding, load_unet, load_vae,
                                                       whisper_windows)
from tests.generator.musetalk.tiny_musetalk import write_tiny_models


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("models")
    write_tiny_models(str(d))
    return str(d)


@pytest.fixture(scope="module")
def model(models_dir):
    return MuseTalk(MuseTalkFiles.layout(models_dir, "v15"))


@pytest.fixture(scope="module")
def stock(models_dir):
    """The networks as MuseTalk loads them: stock diffusers modules, none of our replacements."""
    files = MuseTalkFiles.layout(models_dir, "v15")
    return load_unet(files), load_vae(files)


# --- MuseTalk's inference, restated step by step (BGR frames as cv2 reads them) -------------------------------

def ref_latents(vae, bgr_crop):
    mask = torch.zeros((256, 256))
    mask[:128, :] = 1

    def prep(half):
        img = cv2.cvtColor(bgr_crop, cv2.COLOR_BGR2RGB)
        x = np.asarray([img]) / 255.
        x = torch.squeeze(torch.FloatTensor(np.transpose(x, (3, 0, 1, 2))))
        if half:
            x = x * (mask > 0.5)
        x = (x - 0.5) / 0.5
        return x.unsqueeze(0)

    enc = [0.18215 * vae.encode(prep(h)).latent_dist.mode() for h in (True, False)]
    return torch.cat(enc, dim=1)


def ref_whisper_chunks(extractor, whisper, audio, fps):
    segs = [audio[i:i + 480000] for i in range(0, len(audio), 480000)]
    feats = [torch.stack(whisper(extractor(s, return_tensors="pt", sampling_rate=16000).input_features,
                                 output_hidden_states=True).hidden_states, dim=2) for s in segs]
    wf = torch.cat(feats, dim=1)
    fps = int(fps)
    mult = 50 / fps
    num_frames = math.floor((len(audio) / 16000) * fps)
    actual = math.floor((len(audio) / 16000) * 50)
    wf = wf[:, :actual, ...]
    pad = math.ceil(mult)
    wf = torch.cat([torch.zeros_like(wf[:, :pad * 2]), wf, torch.zeros_like(wf[:, :pad * 3 * 2])], 1)
    clips = []
    for i in range(num_frames):
        idx = math.floor(i * mult)
        clip = wf[:, idx: idx + 10]
        assert clip.shape[1] == 10
        clips.append(clip)
    out = torch.cat(clips, dim=0)
    return out.reshape(out.shape[0], 50, 384)   # rearrange 'b c h w -> b (c h) w'


def ref_decode_float(vae, latents):
    image = vae.decode((1 / 0.18215) * latents).sample
    return (image / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1)   # before *255, round, RGB->BGR


@pytest.mark.parametrize("fps,fast", [(25, False), (30, False), (24, False), (25, True)])
@torch.no_grad()
def test_frames_equal_musetalks_pipeline(models_dir, model, stock, fps, fast):
    """fast: the GPU path's decoder replacements (fused norms and residual sums, per-tap output convolution,
    mid-block attention as matrix products) switched on here on the CPU, where the norms take PyTorch's path."""
    if fast:
        model = MuseTalk(MuseTalkFiles.layout(models_dir, "v15"), fused_kernels=True)
        kinds = [type(m).__name__ for m in model.vae.decoder.modules()]
        assert kinds[0] == "FusedDecoder" and "FusedResnetBlock2D" in kinds and "ResnetBlock2D" not in kinds
        assert type(model.vae.decoder.conv_out).__name__ == "TapConv2d"
    unet, vae = stock
    rng = np.random.default_rng(fps)
    crops_rgb = rng.integers(0, 256, (3, 256, 256, 3), dtype=np.uint8)
    audio = (0.1 * rng.standard_normal(int(16000 * 1.37))).astype(np.float32)

    ours_lat = model.encode_crops(crops_rgb)
    ref_lat = torch.cat([ref_latents(vae, c[..., ::-1].copy()) for c in crops_rgb])
    assert torch.allclose(ours_lat, ref_lat, atol=1e-5)

    ours_tok = model.audio_tokens(audio, fps)
    ref_tok = ref_whisper_chunks(model.extractor, model.whisper, audio, fps)
    assert ours_tok.shape == ref_tok.shape == (math.floor(1.37 * fps), 50, 384)
    assert torch.allclose(ours_tok, ref_tok, atol=1e-6)

    pe = PositionalEncoding(d_model=384)
    frames = [0, len(ref_tok) // 2, len(ref_tok) - 1]          # start, middle and end of the clip
    lat = ref_lat[[i % 3 for i in range(3)]]
    ref_pred = unet(lat, torch.tensor([0]), encoder_hidden_states=pe(ref_tok[frames])).sample
    ref_img = ref_decode_float(vae, ref_pred)
    ours = model.generate(ours_lat, ours_tok[frames])
    assert (ours - ref_img).abs().max().item() <= 1e-4
    ref_bgr = (ref_img.numpy() * 255).round().astype("uint8")[..., ::-1]
    diff = np.abs(model.to_uint8(ours).astype(int) - ref_bgr[..., ::-1])   # rounding at x.5 may flip a level
    assert diff.max() <= 1 and (diff == 0).mean() > 0.99
    assert np.array_equal(model.to_host(model.generate_uint8(ours_lat, ours_tok[frames])), model.to_uint8(ours))


@torch.no_grad()
def test_audio_over_30_seconds_is_encoded_segment_by_segment(model):
    audio = (0.05 * np.random.default_rng(3).standard_normal(16000 * 31 + 1234)).astype(np.float32)
    ours = model.audio_tokens(audio, 25)
    ref = ref_whisper_chunks(model.extractor, model.whisper, audio, 25)
    assert ours.shape == ref.shape == (math.floor((16000 * 31 + 1234) / 16000 * 25), 50, 384)
    assert torch.allclose(ours, ref, atol=1e-6)


@torch.no_grad()
def test_features_of_several_requests_in_one_pass_equal_each_alone(model):
    rng = np.random.default_rng(5)
    requests = [((0.05 * rng.standard_normal(n)).astype(np.float32), fps, None)
                for n, fps in ((16000 * 31 + 77, 25), (12345, 30), (16000 * 2, 25))]
    together = model.audio_tokens_many(requests, max_segments=3)      # 4 segments: two passes
    for (audio, fps, _), tokens in zip(requests, together):
        alone = model.audio_tokens(audio, fps)
        assert tokens.shape == alone.shape
        assert torch.allclose(tokens, alone, atol=1e-5)


def test_whisper_passes_padded_to_a_graph_bucket_give_each_window_its_own_states(model):
    """With whisper's graphs on, a pass runs at the next bucket size (padded with silent windows) and its result
    is copied out of the graph's buffer. The graph runner here is a stand-in that, like a CUDA graph, writes into
    one buffer per shape that the next call overwrites (CUDA graphs need a GPU)."""
    buffers = {}

    def graph(mels):
        out = buffers.setdefault(mels.shape, torch.empty((len(mels), 1500, 5, 384)))
        out.copy_(model._encoder_states(mels))
        return out

    rng = np.random.default_rng(9)
    mels = model.log_mels([(0.1 * rng.standard_normal(16000 * 3)).astype(np.float32) for _ in range(3)])
    eager = model.encode_mels(mels)
    model._whisper_graphs = graph
    try:
        first = model.encode_mels(mels)                    # 3 windows -> the bucket of 4
        model.encode_mels(mels * 0)                        # another pass of that bucket overwrites its buffer
        again = model.encode_mels(mels[1:])                # 2 windows -> the bucket of 2
    finally:
        model._whisper_graphs = None
    assert set(buffers) == {(4, 80, 3000), (2, 80, 3000)}
    assert first.shape == eager.shape and torch.allclose(first, eager, atol=1e-5)
    assert torch.allclose(again, eager[1:], atol=1e-5)
    # eager on a GPU: the encoder runs at the bucket's count too (the shapes warmed at start)
    seen, states = [], model._encoder_states
    model._encoder_states = lambda m: seen.append(tuple(m.shape)) or states(m)
    model.whisper_buckets = True
    try:
        padded = model.encode_mels(mels)
    finally:
        model.whisper_buckets = False
        del model._encoder_states
    assert seen == [(4, 80, 3000)] and padded.shape == eager.shape and torch.allclose(padded, eager, atol=1e-5)


def test_log_mels_of_a_batch_equal_the_feature_extractor(model):
    rng = np.random.default_rng(6)
    pieces = [(0.1 * rng.standard_normal(n)).astype(np.float32) for n in (16000 * 30, 12345, 1)]
    ours = model.log_mels(pieces)
    ref = torch.from_numpy(model.extractor(pieces, sampling_rate=16000, return_tensors="np").input_features)
    assert ours.shape == ref.shape == (3, 80, 3000)
    assert torch.allclose(ours, ref, atol=1e-4)
    model.whisper_buckets = True              # as on a GPU: 3 pieces go through the STFT as a bucket of 4 rows
    try:
        bucketed = model.log_mels(pieces)
    finally:
        model.whisper_buckets = False
    assert bucketed.shape == (3, 80, 3000) and torch.allclose(bucketed, ours, atol=1e-6)


def test_window_edges_are_zero_padded():
    # 50 Hz steps numbered 1..T in every element, so a window shows which steps it took (0 = padding)
    T = 100                                     # 2 s of audio
    feats = torch.arange(1, T + 1, dtype=torch.float32)[None, :, None, None].expand(1, T, 5, 384).clone()
    w = whisper_windows(feats, 32000, 25)
    assert w.shape == (50, 50, 384)
    steps = w[:, ::5, 0]                        # one token per 50 Hz step
    assert steps[0].tolist() == [0, 0, 0, 0, 1, 2, 3, 4, 5, 6]            # frame 0: 4 zero steps in front
    assert steps[10].tolist() == list(range(17, 27))                      # frame i: steps 2i-4 .. 2i+5
    assert steps[49].tolist() == [95, 96, 97, 98, 99, 100, 0, 0, 0, 0]    # last frame: zeros behind
    w30 = whisper_windows(feats, 32000, 30)
    assert w30.shape[0] == 60 and w30[0, ::5, 0].tolist() == [0] * 4 + [1, 2, 3, 4, 5, 6]
    # a fractional rate: MuseTalk uses int(fps) for the window; extra frames read zeros past the end
    w_frac = whisper_windows(feats, 32000, 29.97, num_frames=59)
    assert w_frac.shape[0] == 59 and w_frac[58, ::5, 0].tolist()[-1] == 0


def test_latent_sample_option_is_seeded(models_dir):
    crops = np.random.default_rng(0).integers(0, 256, (1, 256, 256, 3), dtype=np.uint8)
    a = MuseTalk(MuseTalkFiles.layout(models_dir, "v15"), latent="sample", seed=7).encode_crops(crops)
    b = MuseTalk(MuseTalkFiles.layout(models_dir, "v15"), latent="sample", seed=7).encode_crops(crops)
    c = MuseTalk(MuseTalkFiles.layout(models_dir, "v15"), latent="mode").encode_crops(crops)
    assert torch.equal(a, b) and not torch.allclose(a, c)


@torch.no_grad()
def test_decoding_in_chunks_gives_the_same_frames(models_dir):
    files = MuseTalkFiles.layout(models_dir, "v15")
    whole, chunked = MuseTalk(files), MuseTalk(files, decode_chunk=2)
    g = torch.Generator().manual_seed(5)
    lat, tok = torch.randn(5, 8, 32, 32, generator=g), torch.randn(5, 50, 384, generator=g)
    a, b = whole.generate_uint8(lat, tok), chunked.generate_uint8(lat, tok)
    assert a.shape == b.shape == (5, 256, 256, 3)
    diff = (a.int() - b.int()).abs()      # batch size changes the CPU kernels' float rounding, not the function
    assert diff.max() <= 1 and (diff == 0).float().mean() > 0.999
    with pytest.raises(ValueError, match="decode_chunk"):
        MuseTalk(files, decode_chunk=-1)


@torch.no_grad()
def test_phase_upsample_switch_gives_the_same_frames(models_dir):
    """MUSETALK_PHASE_UPSAMPLE=0: diffusers' own nearest upsample + 3x3 convolution; on (the default): the
    phase-decomposed form. The same function up to float rounding."""
    files = MuseTalkFiles.layout(models_dir, "v15")
    plain, phase = MuseTalk(files, phase_upsample=False), MuseTalk(files, phase_upsample=True)

    def kinds(m):
        return {type(x).__name__ for x in list(m.unet.modules()) + list(m.vae.decoder.modules())}

    assert "PhaseUpsample" not in kinds(plain) and "Upsample2D" in kinds(plain)
    assert "PhaseUpsample" in kinds(phase) and "Upsample2D" not in kinds(phase)
    g = torch.Generator().manual_seed(11)
    lat, tok = torch.randn(3, 8, 32, 32, generator=g), torch.randn(3, 50, 384, generator=g)
    a, b = plain.generate(lat, tok), phase.generate(lat, tok)
    assert a.shape == b.shape == (3, 256, 256, 3)
    assert (a - b).abs().max().item() < 1e-5


@torch.no_grad()
def test_plain_path_decodes_exactly_as_musetalk(models_dir, stock):
    """With the fast paths off, the frames are MuseTalk's to the bit: the same networks, and the decode multiplies
    by 1 / scaling_factor as MuseTalk does (a division can differ in the last bit)."""
    model = MuseTalk(MuseTalkFiles.layout(models_dir, "v15"), phase_upsample=False)
    unet, vae = stock
    g = torch.Generator().manual_seed(3)
    lat, tok = torch.randn(2, 8, 32, 32, generator=g), torch.randn(2, 50, 384, generator=g)
    pred = unet(lat, torch.tensor([0]), encoder_hidden_states=PositionalEncoding(d_model=384)(tok)).sample
    assert torch.equal(model.generate(lat, tok), ref_decode_float(vae, pred))


@torch.no_grad()
def test_a_batch_of_parts_comes_to_the_host_as_one_array_and_its_busy_time_and_wait_are_counted(model):
    """generate_to_host: each part's first `rows` crops (the rest is padding to a compiled size), in order, as one
    array; the batch's time on the device goes to lipsync_generator_gpu_busy_seconds_total once it is collected
    (nothing on the CPU: there is no device stream to time), and the stream's wait since the batch before it ended
    to lipsync_generator_gpu_gap_seconds_total (waits under 1 s only)."""
    from prometheus_client import REGISTRY

    from services.generator.engines.musetalk.engine import _Crops

    g = torch.Generator().manual_seed(7)
    lat, tok = torch.randn(3, 8, 32, 32, generator=g), torch.randn(3, 50, 384, generator=g)
    padded = (torch.cat([lat[2:], lat[2:]]), torch.cat([tok[2:], tok[2:]]), 1)      # 1 real row of a size-2 part
    copy = model.generate_to_host([(lat[:2], tok[:2], 2), padded])
    assert copy.done() and copy.gpu_s() == 0.0
    got = copy()
    assert got.shape == (3, 256, 256, 3)
    assert np.array_equal(got, np.concatenate([model.generate_uint8(lat[:2], tok[:2]).numpy(),
                                               model.generate_uint8(*padded[:2])[:1].numpy()]))

    class Event:                          # a CUDA event: when the stream reached it, in ms
        def __init__(self, ms):
            self.ms = ms

        def elapsed_time(self, later):
            return later.ms - self.ms

    class Timed:                          # a device copy whose events measured start_ms -> end_ms
        def __init__(self, start_ms, end_ms):
            self.start, self.event = Event(start_ms), Event(end_ms)

        def __call__(self):
            return got

        def gpu_s(self):
            return self.start.elapsed_time(self.event) / 1000

    def counted(name):
        return REGISTRY.get_sample_value(f"lipsync_generator_gpu_{name}_seconds_total")

    busy0, gaps0 = counted("busy"), counted("gap")
    crops = _Crops(Timed(1000, 1025), [0, 2, 3], 4)()          # item 1 had no face: zeros there
    assert counted("busy") - busy0 == pytest.approx(0.025)
    _Crops(Timed(1029, 1079), [0], 1)()                          # the stream waited 4 ms for this batch
    assert counted("busy") - busy0 == pytest.approx(0.075) and counted("gap") - gaps0 == pytest.approx(0.004)
    _Crops(Timed(1079, 1129), [0], 1)()                          # launched ahead: no wait
    after_idle = _Crops(Timed(3200, 3250), [0], 1)
    after_idle()                                                 # 2 s idle: between runs of work, not a wait
    assert counted("gap") - gaps0 == pytest.approx(0.004) and counted("busy") - busy0 == pytest.approx(0.175)
    # a new run of work began with that batch: its launch on the host's monotonic clock (what a client compares)
    run_start = REGISTRY.get_sample_value("lipsync_generator_gpu_run_start_seconds")
    assert run_start == after_idle.launched and abs(run_start - time.monotonic()) < 60
    _Crops(Timed(3260, 3300), [0], 1)()                          # inside that run: the start stays
    assert REGISTRY.get_sample_value("lipsync_generator_gpu_run_start_seconds") == run_start
    assert np.array_equal(crops[0], got[0]) and not crops[1].any() and np.array_equal(crops[3], got[2])
