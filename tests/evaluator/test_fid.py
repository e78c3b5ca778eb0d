"""FID / KID (services/evaluator/fid.py), checked against independent formulas."""
import numpy as np
import pytest
import scipy.linalg

from services.evaluator import fid as fid_mod
from services.evaluator.fid import InceptionFeatures, fid, frechet_distance, kid, statistics


# ----------------------------------------------------------------------------
# independent references, written from the formulas
# ----------------------------------------------------------------------------

def _mean_cov(x):
    x = np.asarray(x, dtype=np.float64)
    mu = x.sum(axis=0) / len(x)
    c = x - mu
    return mu, c.T @ c / (len(x) - 1)


def _psd_sqrt(s):
    w, v = np.linalg.eigh(s)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def _ref_frechet(mu1, s1, mu2, s2):
    # Tr sqrt(S1 S2) = sum of sqrt of the eigenvalues of S1^1/2 S2 S1^1/2 (symmetric PSD)
    r = _psd_sqrt(s1)
    m = r @ s2 @ r
    ev = np.linalg.eigvalsh((m + m.T) / 2)
    tr_sqrt = np.sqrt(np.clip(ev, 0, None)).sum()
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * tr_sqrt)


def _ref_kid(a, b, subsets, subset_size, seed):
    d = a.shape[1]
    m = min(subset_size, len(a), len(b))
    rng = np.random.default_rng(seed)

    def k(u, v):
        return (float(np.dot(u, v)) / d + 1.0) ** 3

    vals = []
    for _ in range(subsets):
        x = a[rng.choice(len(a), m, replace=False)]
        y = b[rng.choice(len(b), m, replace=False)]
        kxx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j)
        kyy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j)
        kxy = sum(k(x[i], y[j]) for i in range(m) for j in range(m))
        vals.append(kxx / (m * (m - 1)) + kyy / (m * (m - 1)) - 2 * kxy / (m * m))
    return float(np.mean(vals)), float(np.std(vals))


def _features(seed, n, d, shift=0.0, scale=1.0):
    rng = np.random.default_rng(seed)
    mix = rng.normal(size=(d, d)) / np.sqrt(d)
    return (rng.normal(size=(n, d)) @ mix) * scale + shift


# ----------------------------------------------------------------------------
# FID
# ----------------------------------------------------------------------------

def test_statistics_are_mean_and_unbiased_covariance():
    x = _features(0, 50, 8)
    mu, sigma = statistics(x)
    mu_ref, sigma_ref = _mean_cov(x)
    np.testing.assert_allclose(mu, mu_ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(sigma, sigma_ref, rtol=1e-10, atol=1e-12)


def test_fid_of_a_set_with_itself_is_zero():
    x = _features(1, 300, 32)
    assert abs(fid(x, x)) < 1e-6


def test_frechet_distance_matches_independent_computation():
    a = _features(2, 200, 16)
    b = _features(3, 150, 16, shift=0.3, scale=1.5)
    mu1, s1 = _mean_cov(a)
    mu2, s2 = _mean_cov(b)
    ref = _ref_frechet(mu1, s1, mu2, s2)
    assert ref > 1.0
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(ref, rel=1e-8)
    assert fid(a, b) == pytest.approx(ref, rel=1e-8)
    assert fid(b, a) == pytest.approx(ref, rel=1e-8)


def test_rank_deficient_covariances_give_a_finite_value():
    # fewer samples than dimensions: both covariances (and their product) are singular
    a = _features(4, 10, 64)
    b = _features(5, 12, 64, shift=0.2)
    value = fid(a, b)
    assert np.isfinite(value)
    mu1, s1 = _mean_cov(a)
    mu2, s2 = _mean_cov(b)
    assert value == pytest.approx(_ref_frechet(mu1, s1, mu2, s2), abs=1e-4)


def test_eps_offset_path_when_sqrtm_is_not_finite(monkeypatch):
    # Older SciPy returns inf/nan for singular products; force that on the first
    # call so the eps-offset branch runs (as it would there).
    a = _features(6, 10, 64)
    b = _features(7, 12, 64, shift=0.2)
    mu1, s1 = _mean_cov(a)
    mu2, s2 = _mean_cov(b)
    real_sqrtm = scipy.linalg.sqrtm
    calls = []

    def flaky_sqrtm(m, *args, **kwargs):
        calls.append(m)
        if len(calls) == 1:
            return np.full_like(m, np.nan)
        return real_sqrtm(m, *args, **kwargs)

    monkeypatch.setattr(fid_mod.linalg, "sqrtm", flaky_sqrtm)
    eps = 1e-6
    with pytest.warns(RuntimeWarning, match="adding"):
        value = frechet_distance(mu1, s1, mu2, s2, eps=eps)
    assert len(calls) == 2
    np.testing.assert_allclose(calls[1], (s1 + eps * np.eye(64)) @ (s2 + eps * np.eye(64)))
    assert np.isfinite(value)
    # pytorch-fid keeps the plain traces and takes only the sqrtm term from the offset covariances
    off = eps * np.eye(64)
    expected = _ref_frechet(mu1, s1 + off, mu2, s2 + off) - 2 * 64 * eps
    assert value == pytest.approx(expected, rel=1e-6)
    # the offset moves the value by O(sqrt(eps)) per singular direction only
    assert value == pytest.approx(_ref_frechet(mu1, s1, mu2, s2), abs=0.05)


def test_large_imaginary_component_is_an_error():
    # sqrtm(-I) = i*I: not a numerical artefact, so it must not be silently dropped
    with pytest.raises(ValueError, match="Imaginary component"):
        frechet_distance(np.zeros(3), -np.eye(3), np.zeros(3), np.eye(3))


# ----------------------------------------------------------------------------
# KID
# ----------------------------------------------------------------------------

def test_kid_matches_independent_computation():
    a = np.abs(_features(8, 60, 8))
    b = np.abs(_features(9, 50, 8, shift=0.2))
    mean, std = kid(a, b, subsets=5, subset_size=20, seed=3)
    ref_mean, ref_std = _ref_kid(a, b, subsets=5, subset_size=20, seed=3)
    assert mean == pytest.approx(ref_mean, rel=1e-9, abs=1e-12)
    assert std == pytest.approx(ref_std, rel=1e-9, abs=1e-12)
    # the same seed gives the same subsets
    assert kid(a, b, subsets=5, subset_size=20, seed=3) == (mean, std)
    assert kid(a, b, subsets=5, subset_size=20, seed=4) != (mean, std)


def test_kid_of_a_set_with_itself_matches_reference_and_is_near_zero():
    a = _features(10, 40, 8)
    assert kid(a, a, subsets=4, subset_size=15, seed=0) == pytest.approx(
        _ref_kid(a, a, subsets=4, subset_size=15, seed=0), rel=1e-9, abs=1e-12)

    x = _features(11, 1000, 16)
    self_mean, _ = kid(x, x, subsets=50, subset_size=100, seed=0)
    shifted_mean, shifted_std = kid(x, x + 0.3, subsets=50, subset_size=100, seed=0)
    # ~0 up to the small overlap bias of sampling both subsets from one set
    assert abs(self_mean) < 0.05
    assert abs(self_mean) < 0.1 * shifted_mean


def test_kid_is_positive_for_shifted_distributions():
    a = _features(12, 400, 16)
    b = _features(13, 400, 16, shift=0.5)
    mean, std = kid(a, b, subsets=20, subset_size=100, seed=0)
    assert mean > 0
    assert mean > 5 * std / np.sqrt(20)
    bigger, _ = kid(a, _features(13, 400, 16, shift=1.0), subsets=20, subset_size=100, seed=0)
    assert bigger > mean


def test_kid_subset_size_is_clamped_to_the_sample_count():
    a = _features(14, 12, 6)
    b = _features(15, 9, 6, shift=0.4)
    mean, std = kid(a, b, subsets=3, subset_size=1000, seed=0)
    assert (mean, std) == pytest.approx(_ref_kid(a, b, subsets=3, subset_size=9, seed=0),
                                        rel=1e-9, abs=1e-12)
    # both sets smaller than the subset size: every subset is the full set
    mean_full, std_full = kid(a[:9], b, subsets=3, subset_size=1000, seed=0)
    assert std_full == pytest.approx(0.0, abs=1e-12)
    assert mean_full == pytest.approx(_ref_kid(a[:9], b, subsets=1, subset_size=9, seed=0)[0],
                                      rel=1e-9)
    with pytest.raises(ValueError):
        kid(a[:1], b)


# ----------------------------------------------------------------------------
# Inception features
# ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def extractor():
    return InceptionFeatures()


@pytest.fixture(scope="module")
def frames():
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, size=(4, 6, 5, 3)).astype(np.float64)
    # smooth 6x5 colour patterns upscaled to 48x40 plus a little noise
    imgs = np.repeat(np.repeat(base, 8, axis=1), 8, axis=2)
    imgs += rng.normal(0, 8, size=imgs.shape)
    return np.clip(imgs, 0, 255).astype(np.uint8)


def _bilinear_half_pixel(img, out_h, out_w):
    """numpy bilinear resize, half-pixel centres, edge clamp, no antialiasing."""
    h, w = img.shape[:2]

    def axis(n_in, n_out):
        src = np.maximum((np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5, 0.0)
        i0 = np.minimum(np.floor(src).astype(int), n_in - 1)
        i1 = np.minimum(i0 + 1, n_in - 1)
        return i0, i1, src - i0

    y0, y1, fy = axis(h, out_h)
    x0, x1, fx = axis(w, out_w)
    fy = fy[:, None, None]
    fx = fx[None, :, None]
    top = img[y0][:, x0] * (1 - fx) + img[y0][:, x1] * fx
    bottom = img[y1][:, x0] * (1 - fx) + img[y1][:, x1] * fx
    return top * (1 - fy) + bottom * fy


def test_preprocess_is_pytorch_fid_input(frames):
    x = InceptionFeatures.preprocess(frames[:2]).numpy()
    assert x.shape == (2, 3, 299, 299) and x.dtype == np.float32
    for i in range(2):
        ref = _bilinear_half_pixel(frames[i].astype(np.float64) / 255.0, 299, 299) * 2 - 1
        np.testing.assert_allclose(x[i].transpose(1, 2, 0), ref, atol=1e-5)
    # already 299x299: no resampling at all
    big = np.random.default_rng(1).integers(0, 256, size=(1, 299, 299, 3), dtype=np.uint8)
    y = InceptionFeatures.preprocess(big).numpy()[0].transpose(1, 2, 0)
    np.testing.assert_array_equal(y, (big[0].astype(np.float32) / 255) * 2 - 1)


def test_inception_features_shape_batch_independence_and_discrimination(extractor, frames):
    f4 = extractor(frames, batch_size=4)
    f1 = extractor(frames, batch_size=1)
    assert f4.shape == (4, 2048) and f4.dtype == np.float64
    assert np.isfinite(f4).all() and (f4 >= 0).all()   # ReLU + average pool
    np.testing.assert_allclose(f1, f4, rtol=0, atol=1e-5)
    # different images, different features
    for i in range(4):
        for j in range(i + 1, 4):
            assert np.abs(f4[i] - f4[j]).max() > 1e-2


def test_inception_features_equal_the_networks_output_on_plain_nchw_input(extractor, frames):
    """The features run on channels-last input (faster on CPU); they must be those of the model called on the
    contiguous NCHW tensor pytorch-fid passes it, up to float32 summation order."""
    import torch

    with torch.inference_mode():
        ref = extractor.model(InceptionFeatures.preprocess(frames)).double().numpy()
    np.testing.assert_allclose(extractor(frames), ref, rtol=0, atol=1e-4)


def test_inception_features_input_validation(extractor, frames):
    with pytest.raises(TypeError):
        extractor(frames.astype(np.float32))
    with pytest.raises(ValueError):
        extractor(frames[0])
    assert extractor(frames[:0]).shape == (0, 2048)


def test_missing_model_file_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        InceptionFeatures(model_path=str(tmp_path / "nope.pt"))


def test_low_rank_path_equals_pytorch_fids_computation():
    from services.evaluator.fid import frechet_distance, frechet_distance_low_rank, statistics
    rng = np.random.default_rng(3)
    a = rng.standard_normal((40, 64)) * 0.3 + 0.1
    b = rng.standard_normal((30, 64)) * 0.5
    want = frechet_distance(*statistics(a), *statistics(b))
    assert frechet_distance_low_rank(a, b) == pytest.approx(want, rel=1e-6, abs=1e-8)
    assert frechet_distance_low_rank(a, a) == pytest.approx(0.0, abs=1e-9)
