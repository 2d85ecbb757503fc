"""Low-dose simulation: Radon/FBP against scikit-image, and the physics of the noise."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage.data import shepp_logan_phantom
from skimage.transform import iradon, radon, rescale

from medattn.denoise.simulate import MU_WATER, fbp, hu_to_mu, mu_to_hu, simulate_low_dose
from medattn.denoise.simulate import radon as t_radon


def _sim(*args, **kwargs) -> np.ndarray:
    # a low flux makes the noise large against the FBP error of these small phantoms
    return simulate_low_dose(*args, **{"i0": 1e5, **kwargs})


@pytest.fixture(scope="module")
def phantom() -> np.ndarray:
    return rescale(shepp_logan_phantom(), 64 / 400, anti_aliasing=True).astype(np.float64)


def _disk(n: int, r: float) -> np.ndarray:
    yy, xx = np.mgrid[:n, :n] - n // 2
    return xx**2 + yy**2 <= r**2


@pytest.mark.parametrize("n_angles", [30, 61])
def test_radon_matches_skimage(phantom: np.ndarray, n_angles: int) -> None:
    theta = np.linspace(0.0, 180.0, n_angles, endpoint=False)
    ref = radon(phantom, theta, circle=True)
    ours = t_radon(torch.from_numpy(phantom), angles_deg=theta).numpy().T
    np.testing.assert_allclose(ours, ref, atol=1e-9 * np.abs(ref).max())


@pytest.mark.parametrize("odd", [False, True])
def test_fbp_matches_skimage_iradon(phantom: np.ndarray, odd: bool) -> None:
    img = phantom[:63, :63] if odd else phantom
    theta = np.linspace(0.0, 180.0, 90, endpoint=False)
    sino = radon(img, theta, circle=True)
    ref = iradon(sino, theta, circle=True, filter_name="ramp")
    ours = fbp(torch.from_numpy(sino.T), "ramp", angles_deg=theta).numpy()
    inside = _disk(img.shape[0], img.shape[0] // 2 - 1)
    np.testing.assert_allclose(ours[inside], ref[inside], atol=1e-9)


def test_fbp_inverts_radon(phantom: np.ndarray) -> None:
    # independent of scikit-image: with enough views FBP(R f) ~ f inside the field of view
    rec = fbp(t_radon(torch.from_numpy(phantom), n_angles=180), "ramp").numpy()
    inside = _disk(64, 28)
    assert np.abs(rec - phantom)[inside].mean() < 0.03


def test_hu_mu_round_trip() -> None:
    hu = torch.tensor([-1000.0, 0.0, 1000.0, 40.0])
    np.testing.assert_allclose(hu_to_mu(hu).numpy(), [0.0, MU_WATER, 2 * MU_WATER, MU_WATER * 1.04], rtol=1e-6)
    np.testing.assert_allclose(mu_to_hu(hu_to_mu(hu)).numpy(), hu.numpy(), atol=1e-3)


def _water_phantom(n: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """A water cylinder with a bone insert in air, and a uniform region of interest inside the water."""
    yy, xx = np.mgrid[:n, :n] - n / 2 + 0.5
    img = np.where(xx**2 + yy**2 < (0.4 * n) ** 2, 0.0, -1000.0).astype(np.float32)
    img[(xx - 6) ** 2 + yy**2 < 25] = 700.0
    roi = xx**2 + (yy - 12) ** 2 < 30
    return img, roi


def test_mean_hu_preserved_in_uniform_region() -> None:
    img, roi = _water_phantom()
    out = _sim(np.stack([img] * 6), dose=0.25, n_angles=96, seed=1)
    assert out.shape == (6, 64, 64) and out.dtype == np.float32
    # the noise is several tens of HU per pixel; the mean over ~6 x 90 pixels is within a few HU
    assert out[:, roi].std() > 10
    assert abs(out[:, roi].mean() - 0.0) < 6.0


def test_noise_variance_scales_as_inverse_dose() -> None:
    img, roi = _water_phantom()
    var = {}
    chain = _sim(img, n_angles=96, noiseless=True)  # the deterministic FBP error, not noise
    for dose in (1.0, 0.25):
        out = _sim(np.stack([img] * 8), dose=dose, n_angles=96, seed=2)
        var[dose] = (out - chain)[:, roi].var()
    ratio = var[0.25] / var[1.0]
    assert 3.0 < ratio < 5.3, ratio  # 4 expected for quantum noise


def test_full_dose_high_flux_returns_input() -> None:
    img, roi = _water_phantom()
    out = _sim(img, dose=1.0, i0=1e13, n_angles=128, seed=3)
    chain = _sim(img, n_angles=128, noiseless=True)
    # what remains is the reconstruction error of FBP itself: the same image as without noise ...
    assert np.abs(out - chain).max() < 1.0
    # ... which is small in uniform regions and bounded at the sharp air/water/bone edges
    assert abs(out[roi].mean()) < 2.0 and out[roi].std() < 12.0
    inside = _disk(64, 22)
    assert np.abs(out - img)[inside].mean() < 20.0
    assert np.corrcoef(out[inside], img[inside])[0, 1] > 0.97


def test_seed_repeatable_and_electronic_noise_adds_variance() -> None:
    img, roi = _water_phantom()
    a = _sim(img, dose=0.5, n_angles=48, seed=7)
    b = _sim(img, dose=0.5, n_angles=48, seed=7)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, _sim(img, dose=0.5, n_angles=48, seed=8))
    batch = np.stack([img] * 8)
    quiet = _sim(batch, dose=0.02, n_angles=48, seed=8)[:, roi].var()
    loud = _sim(batch, dose=0.02, n_angles=48, seed=8, electronic_noise=150.0)[:, roi].var()
    assert loud > 1.5 * quiet


def test_hann_is_smoother_than_ramp() -> None:
    img, roi = _water_phantom()
    ramp = _sim(np.stack([img] * 4), dose=0.25, n_angles=96, seed=5, filter_name="ramp")
    hann = _sim(np.stack([img] * 4), dose=0.25, n_angles=96, seed=5, filter_name="hann")
    assert hann[:, roi].var() < 0.7 * ramp[:, roi].var()


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="dose"):
        _sim(np.zeros((8, 8)), dose=0)
    with pytest.raises(ValueError, match="filter"):
        fbp(np.zeros((4, 8)), "shepp")
    with pytest.raises(ValueError, match="slice"):
        _sim(np.zeros((2, 2, 8, 8)))
