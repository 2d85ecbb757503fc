"""PSNR / SSIM / RMSE against scikit-image on real CT (HU) and a real 8-bit image."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from medattn.metrics import DenoisingMetrics, psnr, rmse_hu, ssim


@pytest.fixture(scope="module")
def ct_slice(request) -> np.ndarray:
    nib = pytest.importorskip("nibabel")
    root = request.getfixturevalue("shared_data")
    vol = np.asarray(nib.load(root / "ct/totalsegmentator-example/example_ct.nii.gz").dataobj, dtype=np.float64)
    return vol[::2, ::2, vol.shape[2] // 2]


@pytest.mark.data
def test_ct_in_a_window_equals_skimage(ct_slice):
    noisy = ct_slice + np.random.default_rng(1).normal(0, 25, ct_slice.shape)
    center, width = 40.0, 400.0
    lo, hi = center - width / 2, center + width / 2
    a, b = np.clip(noisy, lo, hi), np.clip(ct_slice, lo, hi)
    assert psnr(noisy, ct_slice, window=(center, width)) == pytest.approx(
        peak_signal_noise_ratio(b, a, data_range=width), abs=1e-6
    )
    ref = structural_similarity(b, a, data_range=width, gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
    assert ssim(noisy, ct_slice, window=(center, width)) == pytest.approx(ref, abs=1e-6)
    assert rmse_hu(noisy, ct_slice) == pytest.approx(np.sqrt(np.mean((noisy - ct_slice) ** 2)))


@pytest.mark.data
def test_8bit_image_equals_skimage(shared_data):
    from PIL import Image

    img = np.asarray(Image.open(shared_data / "ph2/PH2 Dataset images/IMD002/IMD002_Dermoscopic_Image/IMD002.png").convert("L"))
    img = img[::3, ::3]
    blurred = ndimage.uniform_filter(img, 3)
    assert psnr(blurred, img) == pytest.approx(peak_signal_noise_ratio(img, blurred), abs=1e-6)
    ref = structural_similarity(img, blurred, data_range=255, gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
    assert ssim(blurred, img, data_range=255) == pytest.approx(ref, abs=1e-6)


def test_3d_ssim_equals_skimage():
    rng = np.random.default_rng(2)
    vol = ndimage.gaussian_filter(rng.normal(size=(14, 20, 22)), 2)
    other = vol + rng.normal(0, 0.05, vol.shape)
    ref = structural_similarity(vol, other, data_range=2.0, gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
    assert ssim(other, vol, data_range=2.0) == pytest.approx(ref, abs=1e-6)


def test_explicit_range_rules():
    x = np.linspace(0, 1, 400).reshape(20, 20)
    with pytest.raises(ValueError, match="data_range or window"):
        psnr(x, x * 0.9)
    assert math.isinf(psnr(x, x, data_range=1.0))
    assert ssim(x, x, data_range=1.0) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="width"):
        psnr(x, x, window=(0, 0))


def test_streaming_window_clips_both_images():
    target = np.full((16, 16), 1000.0)  # far above a soft-tissue window
    pred = target + 300.0
    m = DenoisingMetrics(window=(40, 400))
    row = m.update(pred, target)
    assert row["rmse"] == 0.0 and math.isinf(row["psnr"])
    assert rmse_hu(pred, target) == pytest.approx(300.0)
    # a preset name is the same window as its numbers
    x = np.linspace(-300, 400, 24 * 24).reshape(24, 24)
    assert psnr(x + 20, x, window="soft_tissue") == psnr(x + 20, x, window=(40, 400))
    assert m.aggregate()["count"] == 1
