"""Noise measurement (SD, NPS) and the calibrated simulation: noise insertion, kernels, dose and grid ranges."""

from __future__ import annotations

import numpy as np
import pytest

from medattn.denoise.noise import noise_power_spectrum, nps_shape_distance, roi_corners, soft_tissue_mask
from medattn.denoise.simulate import apply_kernel, simulate_low_dose, simulate_noise


def _white(seed: int, sigma: float, n: int = 256) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.0, sigma, (n, n))


def test_nps_of_white_noise_is_flat_at_sigma2_times_pixel_area() -> None:
    sigma, pixel = 12.0, 0.7
    nps = noise_power_spectrum([_white(0, sigma), _white(1, sigma)], [np.ones((256, 256), bool)] * 2,
                               pixel_mm=pixel, roi=32, detrend=False)
    flat = sigma**2 * pixel**2
    assert np.median(nps.nps[1:]) == pytest.approx(flat, rel=0.05)
    assert nps.std_hu == pytest.approx(sigma, rel=0.02)
    # Parseval: the integral of the 2-D NPS is the variance
    assert nps.variance_from_nps() == pytest.approx(nps.std_hu**2, rel=0.01)
    assert nps.freq[-1] == pytest.approx(0.5 / pixel)


def test_nps_against_a_hand_computed_periodogram() -> None:
    x = _white(2, 5.0, 64)
    nps = noise_power_spectrum([x], [np.ones((64, 64), bool)], pixel_mm=1.0, roi=64, detrend=False)
    ref = np.abs(np.fft.fft2(x - x.mean())) ** 2 / 64**2
    np.testing.assert_allclose(nps.nps2d, np.fft.fftshift(ref), rtol=1e-10)


def test_smoothing_moves_power_to_low_frequencies() -> None:
    from scipy import ndimage

    white = _white(3, 10.0)
    smooth = ndimage.gaussian_filter(white, 1.0)
    mask = [np.ones(white.shape, bool)]
    a = noise_power_spectrum([white], mask, pixel_mm=0.5)
    b = noise_power_spectrum([smooth], mask, pixel_mm=0.5)
    assert b.mean_frequency < 0.7 * a.mean_frequency
    assert nps_shape_distance(a, a) == 0.0 and nps_shape_distance(a, b) > 0.3


def test_rois_stay_inside_the_mask_and_the_mask_finds_soft_tissue() -> None:
    hu = np.full((128, 128), -1000.0, np.float32)
    hu[20:108, 20:108] = 40.0
    mask = soft_tissue_mask(hu)
    assert mask[64, 64] and not mask[0, 0] and not mask[21, 64]  # eroded away from the edge
    corners = roi_corners(mask, 32)
    assert corners and all(mask[y : y + 32, x : x + 32].mean() >= 0.9 for y, x in corners)
    with pytest.raises(ValueError, match="no 64x64 ROI"):
        noise_power_spectrum([hu], [np.zeros_like(mask)], pixel_mm=1.0)


def _disk(n: int = 96) -> np.ndarray:
    yy, xx = np.mgrid[:n, :n] - n / 2
    return np.where(xx**2 + yy**2 < (0.4 * n) ** 2, 40.0, -1000.0).astype(np.float32)


def test_noise_insertion_is_the_low_dose_scan_minus_the_noiseless_one() -> None:
    """simulate_noise = FBP(noisy) - FBP(noiseless) of the same counts (FBP is linear)."""
    hu = _disk()
    kw = {"i0": 1e5, "n_angles": 96, "pixel_size_mm": 1.0}
    noise = simulate_noise(hu, 0.25, seed=7, **kw)[0]
    low = simulate_low_dose(hu, 0.25, seed=7, **kw)
    clean = simulate_low_dose(hu, 0.25, noiseless=True, **kw)
    inside = np.abs(hu - 40) < 1
    np.testing.assert_allclose(noise[inside], (low - clean)[inside], atol=1e-2)
    assert abs(float(noise[inside].mean())) < 0.1 * float(noise[inside].std())  # zero-mean noise


def test_noise_variance_goes_as_one_over_dose_and_smoother_kernels_lower_it() -> None:
    hu = _disk()
    kw = {"i0": 1e5, "n_angles": 96, "pixel_size_mm": 1.0, "kernels": (("ramp", 1.0), ("hann", 1.0))}
    inside = np.abs(hu - 40) < 1
    quarter = np.stack([simulate_noise(hu, 0.25, seed=s, **kw) for s in range(4)])
    full = np.stack([simulate_noise(hu, 1.0, seed=10 + s, **kw) for s in range(4)])
    ratio = quarter[:, 0][:, inside].var() / full[:, 0][:, inside].var()
    assert 3.3 < ratio < 4.8
    assert quarter[:, 1][:, inside].std() < 0.75 * quarter[:, 0][:, inside].std()


def test_image_domain_kernel_matches_reconstructing_with_it() -> None:
    """Fourier slice theorem: Hann(c) on the ramp image ~= FBP with the Hann(c) filter."""
    hu = _disk(128)
    noise = simulate_noise(hu, 0.25, i0=1e5, n_angles=200, seed=3, kernels=(("ramp", 1.0), ("hann", 1.25)))
    inside = np.abs(hu - 40) < 1
    filtered = apply_kernel(noise[0], 1.25)
    assert np.corrcoef(filtered[inside], noise[1][inside])[0, 1] > 0.97
    assert filtered[inside].std() == pytest.approx(noise[1][inside].std(), rel=0.05)
    np.testing.assert_allclose(apply_kernel(noise[0], 16.0), noise[0], atol=0.2 * noise[0].std())  # ~ramp
    with pytest.raises(ValueError, match="cutoff"):
        simulate_noise(hu, 0.25, n_angles=48, kernels=(("hann", 0.0),))


def test_simulation_refuses_non_finite_slices() -> None:
    hu = _disk(32)
    hu[3, 3] = np.nan
    with pytest.raises(ValueError, match="NaN or infinite"):
        simulate_low_dose(hu, 0.25, n_angles=48)
