"""MuseTalk engine: the official checkpoints in the official layout under MODELS_DIR, batched across requests.

Model math lives in model.py; this file is the lifecycle (check files, load once, warm up, generate
many, close), the per-source latent cache and the cross-request batcher.
"""
from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from lipsync_common.options import frame_count
from lipsync_common.formats.source_cache import CROP, SourceEntry, source_frame
from services.generator.engines.base import BATCH, INTERACTIVE, EngineUnavailable, Generation, batched
from services.generator.engines.musetalk.batcher import Batcher
from services.generator.engines.musetalk.sizes import batch_plan, buckets
from services.generator.engines.musetalk.side_work import SideWork
from services.generator.engines.musetalk.gpu_memory import BATCH_CLOCK, watch_gpu_memory
from services.generator.engines.musetalk.kept import KeptFiles

log = logging.getLogger(__name__)

# Files in the official MuseTalk layout (a file may have alternatives, e.g. .bin or .safetensors).
COMMON_FILES = [
    ("sd-vae/config.json",),
    ("sd-vae/diffusion_pytorch_model.bin", "sd-vae/diffusion_pytorch_model.safetensors"),
    ("whisper/config.json",),
    ("whisper/pytorch_model.bin", "whisper/model.safetensors"),
    ("whisper/preprocessor_config.json",),
]
VERSION_FILES = {
    "v15": [("musetalkV15/unet.pth",), ("musetalkV15/musetalk.json",)],
    "v1": [("musetalk/pytorch_model.bin",), ("musetalk/musetalk.json",)],
}


def missing_files(models_dir: str, version: str) -> list[str]:
    missing = []
    for alternatives in VERSION_FILES[version] + COMMON_FILES:
        if not any(os.path.isfile(os.path.join(models_dir, p)) for p in alternatives):
            missing.append(" or ".join(alternatives))
    return missing


@dataclass(frozen=True)
class MuseTalkSettings:
    device: str = ""            # "" = cuda when available, else cpu
    dtype: str = ""             # "" = float16 on cuda, float32 on cpu; or "float32", "float16", "bfloat16"
    max_batch: int = 32         # frames per UNet + VAE pass, across requests
    max_wait_ms: float = 4.0    # how long a batch waits for more frames
    latent: str = "mode"        # "mode" (deterministic) or "sample" (MuseTalk's random draw, seeded)
    seed: int = 0
    compile: bool | None = None  # channels_last + torch.compile; None = on for cuda, off for cpu
    fused: bool | None = None    # Triton GroupNorm kernels, per-tap conv_out (fast/fused_groupnorm.py); None = on for cuda
    fused_unet: bool = False     # the same in the UNet (no gain measured; see BENCHMARKS.md)
    decode_chunk: int = 16       # frames the VAE decodes at a time within a batch (GPU memory); 0 = whole batch
    phase_upsample: bool = True  # upsample + 3x3 conv as 2x2 convs per phase (fast/phase_upsample.py); off = diffusers'
    live_lookahead: int = 2      # live sessions: audio frames after a frame before its tokens are made (>= 2)
    side_gather_ms: float = 3.0  # the side thread waits this long for more requests/sessions to batch whisper
    whisper_graphs: bool = False  # whisper's encoder as CUDA graphs per batch bucket (cuda only; no gain measured)
    split_batches: bool = True   # a batch as the compiled sizes of least time (batch_plan), timed at warm-up
    latent_cache_mb: float = 512  # sources' reference latents kept in memory (on the device), most recent first
    launch_lead_ms: float = 10.0  # the next batch launched this long before the running one's due end; < 0: once full
    pending_head_batch: int = 0   # other batches' size while a new request prepares its head; 0: max_batch // 2
    live_batch: int = 0           # frames in a batch that holds live frames; 0: max_batch // 2
    live_fit: bool = True         # ... filled with others only up to the compiled size that holds its live frames
    beside_live_batch: int = 0    # batches without live frames while live frames flow; 0: max_batch // 2
    # a new interactive request's frames ahead of every other request's: this long of video + 1 frame (4 at 25 fps),
    # fewer than render's first fragment holds (6): 4-frame heads gave shorter first chunks in a burst (BENCHMARKS.md)
    head_s: float = 0.12
    # requests' last frames first, oldest request first (batcher.py): a burst's requests end one after another
    finish_frames: int = 16


class MuseTalkEngine:
    name = "musetalk"
    description = "MuseTalk latent inpainting (UNet + SD-VAE + whisper-tiny), official checkpoints"

    def __init__(self, models_dir: str, settings: MuseTalkSettings | None = None):
        self.models_dir = models_dir
        self.settings = settings or MuseTalkSettings()
        self.models: dict = {}
        self.batchers: dict[str, Batcher] = {}
        self.size_costs: dict[str, dict[int, float]] = {}    # version -> seconds per run of each compiled size
        # a request's side work (reference latents, whisper features) runs on CUDA in this one thread: every
        # thread that calls cuBLAS/cuDNN gets its own handles and workspaces (~0.85 GB over 16 request threads
        # on the H200: BENCHMARKS.md), and one stream in one thread keeps one set
        # (one whisper pass for all the requests waiting when it turns to them)
        self._side_worker = SideWork(self._inputs_on_side, name="musetalk-inputs",
                                     gather_s=self.settings.side_gather_ms / 1000)
        self._side = None
        self._side_lock = threading.Lock()
        self._kept = KeptFiles()       # sources' latents in memory, by their cache file

    def check(self, version: str) -> None:
        missing = missing_files(self.models_dir, version)
        if missing:
            hint = ""
            if os.path.isfile(os.path.join(self.models_dir, "whisper", "tiny.pt")):
                hint = (" (whisper/tiny.pt is the openai-whisper format; MuseTalk's current inference, for v1 and "
                        "v1.5 alike, uses the Hugging Face whisper-tiny files: config.json, pytorch_model.bin, "
                        "preprocessor_config.json)")
            raise EngineUnavailable(
                f"musetalk {version} weights not found in MODELS_DIR={os.path.abspath(self.models_dir)}: missing "
                + ", ".join(missing) + hint + ". Run `make weights` (or put the official files there), "
                "or use engine 'warp'.")

    @property
    def versions(self) -> tuple[str, ...]:
        """The versions it runs: those loaded."""
        return tuple(self.models)

    def installed_versions(self) -> list[str]:
        """The versions whose files are all in MODELS_DIR (loaded at start-up)."""
        return [v for v in VERSION_FILES if not missing_files(self.models_dir, v)]

    def available(self) -> tuple[bool, str]:
        if self.installed_versions():
            return True, ""
        try:
            self.check("v15")
        except EngineUnavailable as e:
            return False, str(e)
        return True, ""

    def load(self) -> None:
        import torch

        from services.generator.engines.musetalk.model import MuseTalk, MuseTalkFiles

        s = self.settings
        device = s.device or ("cuda" if torch.cuda.is_available() else "cpu")
        dtype = getattr(torch, s.dtype) if s.dtype else (torch.float16 if device.startswith("cuda") else torch.float32)
        compile_ = device.startswith("cuda") if s.compile is None else s.compile
        sizes = buckets(s.max_batch)
        for version in self.installed_versions():
            model = MuseTalk(MuseTalkFiles.layout(self.models_dir, version), device=device, dtype=dtype,
                             latent=s.latent, seed=s.seed, compile=compile_, phase_upsample=s.phase_upsample,
                             fused_kernels=s.fused, fused_unet=s.fused_unet, decode_chunk=s.decode_chunk,
                             whisper_graphs=s.whisper_graphs)
            self.models[version] = model
            log.info("musetalk %s on %s, %s, compiled: %s, fused kernels: %s", version, device, dtype, compile_,
                     model.fused_detail)
            half = max(1, s.max_batch // 2)     # batches while a newcomer prepares, and those with live frames
            self.batchers[version] = Batcher(
                lambda items, m=model, v=version: self._launch(
                    m, items, sizes, self.size_costs.get(v) if s.split_batches else None),
                s.max_batch, s.max_wait_ms / 1000, name=f"musetalk-{version}",
                cost=None if s.launch_lead_ms < 0 else lambda n, v=version: self._batch_cost(v, n, sizes),
                launch_lead_s=max(0.0, s.launch_lead_ms) / 1000,
                pending_head_batch=s.pending_head_batch or half, live_batch=s.live_batch or half,
                beside_live_batch=s.beside_live_batch or half, live_sizes=sizes if s.live_fit else (),
                finish_items=s.finish_frames)
            latents = model.encode_crops(np.zeros((1, CROP, CROP, 3), np.uint8))[0]
            tokens = model.audio_tokens(np.zeros(16000, np.float32), 25, 1)[0].to(model.dtype)
            # warm up every network at every batch size it will see, in the batcher's own thread (compiled code
            # and CUDA graphs are captured there, where they will run); the largest first, so the smaller graph
            # fits in the memory the larger one's pool already holds
            for size in reversed(sizes):
                for _ in range(3):
                    list(self.batchers[version].submit([(latents, tokens)] * size, window=size, priority=BATCH))
            # each size timed: the batcher launches a batch behind the running one just before that one should end,
            # and with split_batches a batch runs as the sizes of least time
            self.size_costs[version] = self._time_sizes(version, sizes, (latents, tokens))
            log.info("musetalk %s: seconds per batch of each size %s", version, self.size_costs[version])
        if device.startswith("cuda"):
            # give back what compiling and warming up left cached; the CUDA graphs keep their own pool
            torch.cuda.empty_cache()
            # whisper's shapes warmed in the side thread, on its stream, where requests run them: cuDNN's
            # execution plans are cached per thread (a burst's first pass at a new bucket built them on its path),
            # and the side stream's memory pool keeps the blocks of its largest pass
            self._side_worker.call(lambda: self._warm_side(device)).result()
            watch_gpu_memory(torch, device)
            # the graphs are captured: cuDNN's algorithm search (on for the capture) is off again for the eager
            # work that follows (whisper per request, VAE encoding per new source)
            torch.backends.cudnn.benchmark = False

    def _warm_side(self, device) -> None:
        import torch

        stream = self._side_stream(device)
        with torch.cuda.stream(stream):
            for model in self.models.values():
                model.encode_crops(np.zeros((16, CROP, CROP, 3), np.uint8))    # a new source's latents, 16 at a time
            stream.synchronize()
            torch.cuda.empty_cache()       # the VAE encoder's activations (~1.4 GB), as after a new source
            for model in self.models.values():
                model.warm_whisper()
        stream.synchronize()

    def _batch_cost(self, version: str, n: int, sizes: list[int]) -> float:
        """Expected seconds of a batch of n items on the device (0 before the sizes are timed)."""
        costs = self.size_costs.get(version)
        if not costs:
            return 0.0
        plan = batch_plan(n, sizes, costs if self.settings.split_batches else None)
        return sum(costs.get(b, costs[max(costs)]) for b in plan)

    def _time_sizes(self, version: str, sizes: list[int], item: tuple) -> dict[int, float]:
        """Seconds per batch of each compiled size, from launch to crops on the host (the batcher's own clock,
        without its wait for more items), the best of three, after warm-up."""
        batcher, costs = self.batchers[version], {}
        for size in sizes:
            runs = []
            for _ in range(3):
                before = batcher.busy_s
                list(batcher.submit([item] * size, window=size, priority=BATCH))
                runs.append(batcher.busy_s - before)
            costs[size] = min(runs)
        return costs

    @staticmethod
    def _launch(model, items: list, sizes: list[int], costs: dict[int, float] | None = None):
        """Queue one batch on the device (as the parts batch_plan picks); returns a handle whose call gives one
        crop per item (zeros where the source frame has no face) and whose done() says whether the device
        finished."""
        import torch

        real = [i for i, item in enumerate(items) if item is not None]
        if not real:
            return _Crops(None, real, len(items))
        latents = torch.stack([items[i][0] for i in real])
        tokens = torch.stack([items[i][1] for i in real])
        parts, at = [], 0
        for size in batch_plan(len(real), sizes, costs):
            lat, tok = latents[at:at + size], tokens[at:at + size]
            rows = len(lat)
            if size > rows:   # pad to the compiled size: fixed shapes for the compiled networks
                lat = torch.cat([lat, lat[-1:].expand(size - rows, -1, -1, -1)])
                tok = torch.cat([tok, tok[-1:].expand(size - rows, -1, -1)])
            parts.append((lat, tok, rows))
            at += rows
        return _Crops(model.generate_to_host(parts), real, len(items))

    def _latents(self, source: SourceEntry, model, version: str):
        """Reference latents of every source frame, computed once per source (kept with the source in the cache,
        in its derived-data folder, which goes when the entry does)."""
        import torch

        vae_file = next(os.path.join(self.models_dir, p) for p in COMMON_FILES[1]
                        if os.path.isfile(os.path.join(self.models_dir, p)))
        st = os.stat(vae_file)
        key = hashlib.sha256(f"{vae_file}:{st.st_size}:{st.st_mtime_ns}:{self.settings.latent}:"
                             f"{self.settings.seed}:{model.dtype}".encode()).hexdigest()[:16]
        path = os.path.join(source.derived_dir("latents"), f"latents-{key}.pt")
        if os.path.isfile(path):
            kept = self._kept.get(path)
            if kept is not None:
                return kept
            return self._kept.keep(path, torch.load(path, map_location=model.device, weights_only=True),
                                   self.settings.latent_cache_mb * 2**20)
        faces = np.flatnonzero(source.has_face)
        latents = torch.zeros((source.meta.num_frames, 8, CROP // 8, CROP // 8), dtype=model.dtype, device=model.device)
        for start in range(0, len(faces), 16):
            idx = faces[start:start + 16]
            latents[idx] = model.encode_crops(source.crops_at(idx)).to(model.dtype)
        tmp = f"{path}.{os.getpid()}.{threading.get_ident()}.tmp"
        torch.save(latents.cpu(), tmp)
        os.replace(tmp, path)
        self._kept.keep(path, latents, self.settings.latent_cache_mb * 2**20)
        if latents.is_cuda:
            # the VAE encoder's activations (~1.4 GB at 16 crops) would stay cached on the side stream for good:
            # give them back (once per new source; the CUDA graphs' pool is not touched)
            torch.cuda.empty_cache()
        return latents

    def _side_stream(self, device):
        """One high-priority stream for every request's side work. One, not one per request: the caching allocator
        keeps freed memory per stream, so fresh streams would each grow their own pool (and each first allocation
        there calls cudaMalloc, which waits for the whole device, batches in flight included)."""
        import torch

        with self._side_lock:
            if self._side is None:
                self._side = torch.cuda.Stream(device=device, priority=-1)
            return self._side

    def _inputs(self, source: SourceEntry, model, version: str, audio: np.ndarray, fps: float, frames: int):
        """A request's reference latents and whisper features. On the CPU in the request's own thread; on CUDA in
        the one side thread, on a stream of its own at high priority: on the default stream they would queue
        behind the batches of every streaming request (a new request's first frames then wait seconds under
        load)."""
        if not str(model.device).startswith("cuda"):
            return self._latents(source, model, version), model.audio_tokens(audio, fps, frames).to(model.dtype)
        return self._side_worker.submit((source, model, version, audio, fps, frames)).result()

    def _inputs_on_side(self, jobs: list[tuple]) -> list:
        """(latents, tokens) or the exception, for each job; the whisper features of every job of a model in one
        pass."""
        import torch

        out: list = [None] * len(jobs)
        stream = self._side_stream(jobs[0][1].device)
        with torch.cuda.stream(stream):
            for k, (source, model, version, *_rest) in enumerate(jobs):
                try:
                    out[k] = None if source is None else self._latents(source, model, version)
                except Exception as e:  # noqa: BLE001 - that request's error only
                    out[k] = e
            for model in {id(j[1]): j[1] for j in jobs}.values():
                mine = [k for k, j in enumerate(jobs) if j[1] is model and not isinstance(out[k], Exception)]
                try:
                    tokens = model.audio_tokens_many([jobs[k][3:] for k in mine]) if mine else []
                except Exception as e:  # noqa: BLE001 - the pass failed for each of its requests
                    tokens = [e] * len(mine)
                for k, t in zip(mine, tokens):
                    out[k] = t if isinstance(t, Exception) else (out[k], t.to(model.dtype))
        # a live session's tokens only (source None): (None, tokens)
        stream.synchronize()
        default = torch.cuda.default_stream(jobs[0][1].device)
        for result in out:
            for t in () if isinstance(result, Exception) else result:   # read on the default stream by the graphs
                if t is not None:
                    t.record_stream(default)
        return out

    def live_latents(self, source: SourceEntry, model, version: str):
        """A live session's reference latents (computed once per source, as for offline requests)."""
        if not str(model.device).startswith("cuda"):
            return self._latents(source, model, version)
        return self._side_worker.submit((source, model, version, np.zeros(640, np.float32), 25.0, 1)).result()[0]

    def live_tokens(self, model, audio: np.ndarray, fps: float, frames: int, first: int, start_step: int) -> Future:
        """A Future of the audio tokens of frames first..frames-1 from a live session's window, which begins at
        whisper step start_step (model.whisper_windows; on CUDA: batched with every request waiting in the side
        thread; on the CPU: computed now)."""
        if not str(model.device).startswith("cuda"):
            done: Future = Future()
            done.set_result(model.audio_tokens_many([(audio, fps, frames, first, start_step)])[0].to(model.dtype))
            return done
        future: Future = Future()
        job = self._side_worker.submit((None, model, "", audio, fps, frames, first, start_step))
        job.add_done_callback(lambda j: future.set_exception(j.exception()) if j.exception()
                              else future.set_result(j.result()[1]))
        return future

    def _loaded(self, version: str) -> None:
        self.check(version)
        if version not in self.models:
            raise EngineUnavailable(f"musetalk {version} is not loaded (its files appeared after start-up); "
                                    "restart the generator")

    def open_live(self, source: SourceEntry, fps: float, on_crop, *, version: str = "v15"):
        from services.generator.engines.musetalk.live import MuseTalkLive

        self._loaded(version)
        return MuseTalkLive(self, source, version, fps, on_crop)

    def generate(self, source: SourceEntry, audio: np.ndarray, sample_rate: int, fps: float, batch_size: int, *,
                 version: str = "v15", priority: str = INTERACTIVE) -> Generation:
        """The crops of every output frame; the latents and audio features are computed when the first batch is
        asked for (in the caller's thread), then the frames go through the shared batcher. An interactive
        request's head (`head_s` of video and one frame) goes ahead of other requests' frames, and leaves in a
        message of its own."""
        self._loaded(version)
        head = max(1, min(round(self.settings.head_s * fps) + 1, self.settings.max_batch))
        crops = self._crops(source, version, audio, sample_rate, fps, priority, head)
        return Generation(batched(crops, batch_size, cut_at=head if priority == INTERACTIVE else 0))

    def _crops(self, source: SourceEntry, version: str, audio: np.ndarray, sample_rate: int, fps: float,
               priority: str, head: int) -> Iterator[np.ndarray]:
        model, batcher, m = self.models[version], self.batchers[version], source.meta
        frames = frame_count(len(audio), sample_rate, fps)

        def items():
            for t in range(frames):
                idx = source_frame(t, m.num_frames, m.fps, fps)
                yield (latents[idx], tokens[t]) if source.has_face[idx] else None

        with batcher.expecting(priority) as expected:     # its head then waits behind a short batch
            latents, tokens = self._inputs(source, model, version, audio, fps, frames)
            yield from batcher.submit(items(), priority=priority, expected=expected, head=head, total=frames)

    def close(self) -> None:
        """Stop every batcher's thread (requests still waiting get nothing more); it generates nothing after."""
        for b in self.batchers.values():
            b.close()
        self._side_worker.close()
        self.batchers.clear()
        self.models.clear()


class _Crops:
    """One launched batch: its host copy (None when no item had a face) and where each real item sits. Once
    collected, its time on the device and the wait before it are counted (BATCH_CLOCK). Made as it is launched."""

    def __init__(self, copy, real: list[int], n: int):
        self.copy, self.real, self.n, self.launched = copy, real, n, time.monotonic()

    def done(self) -> bool:
        return self.copy is None or self.copy.done()

    def __call__(self) -> list[np.ndarray]:
        out = [np.zeros((CROP, CROP, 3), np.uint8)] * self.n
        if self.copy is not None:
            crops = self.copy()
            BATCH_CLOCK.collected(self.copy, self.launched)
            for k, i in enumerate(self.real):
                out[i] = crops[k]
        return out
