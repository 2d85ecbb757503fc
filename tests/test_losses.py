"""Losses against formulas written out independently (NumPy / SciPy / scikit-image)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.ndimage import uniform_filter
from skimage.metrics import structural_similarity

from medattn.errors import ConfigError
from medattn.losses import DeepSupervisionLoss, aux_weights, build_loss, list_losses


def _pair(seed: int = 0, shape=(2, 1, 40, 48)) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(shape, generator=g, dtype=torch.float64) * 2
    yy, xx = np.mgrid[: shape[2], : shape[3]]
    mask = np.stack([((yy - 15 - 5 * b) ** 2 + (xx - 20) ** 2 < 120) for b in range(shape[0])])[:, None]
    return logits, torch.from_numpy(mask.astype(np.float64))


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-x))


def _np_bce(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    p = _sigmoid(x)
    return -(y * np.log(p) + (1 - y) * np.log(1 - p))


def _np_dice(x: np.ndarray, y: np.ndarray, theta: float = 1.0) -> float:
    """EFEN eq. 11 per image, averaged: 1 - (2 sum pg + theta) / (sum p^2 + sum g^2 + theta)."""
    p = _sigmoid(x)
    vals = [1 - (2 * (pi * gi).sum() + theta) / ((pi**2).sum() + (gi**2).sum() + theta) for pi, gi in zip(p, y, strict=True)]
    return float(np.mean(vals))


def test_registry_names_and_unknown_name() -> None:
    assert {"bce_dice", "dice", "structure", "l1", "mse", "ssim"} <= set(list_losses())
    with pytest.raises(ConfigError, match="did you mean dice"):
        build_loss("dise")
    with pytest.raises(ConfigError, match="loss 'dice'"):
        build_loss("dice", nonsense=1)


def test_dice_is_efen_equation_11() -> None:
    x, y = _pair()
    got = build_loss("dice")(x, y).item()
    assert got == pytest.approx(_np_dice(x.numpy(), y.numpy()), rel=1e-6)


def test_bce_dice_is_efen_equation_10() -> None:
    x, y = _pair(1)
    want = _np_bce(x.numpy(), y.numpy()).mean() + _np_dice(x.numpy(), y.numpy())
    assert build_loss("bce_dice")(x, y).item() == pytest.approx(want, rel=1e-6)


def test_structure_loss_matches_pranet_formula() -> None:
    x, y = _pair(2)
    xn, yn = x.numpy()[:, 0], y.numpy()[:, 0]
    vals = []
    for xi, yi in zip(xn, yn, strict=True):
        # zero-padded 31x31 box mean (avg_pool2d with count_include_pad)
        local = uniform_filter(yi, size=31, mode="constant", cval=0.0)
        w = 1 + 5 * np.abs(local - yi)
        wbce = (w * _np_bce(xi, yi)).sum() / w.sum()
        p = _sigmoid(xi)
        inter = (p * yi * w).sum()
        union = ((p + yi) * w).sum()
        vals.append(wbce + 1 - (inter + 1) / (union - inter + 1))
    assert build_loss("structure")(x, y).item() == pytest.approx(np.mean(vals), rel=1e-6)


def test_perfect_prediction_gives_small_losses() -> None:
    _, y = _pair(3)
    logits = (y * 2 - 1) * 30  # confident and right
    for name in ("dice", "bce_dice", "structure"):
        assert build_loss(name)(logits, y).item() < 0.02, name
    wrong = -logits
    assert build_loss("dice")(wrong, y).item() > 0.9


def test_restoration_losses() -> None:
    g = torch.Generator().manual_seed(4)
    a = torch.rand(2, 1, 32, 32, generator=g)
    b = (a + 0.1 * torch.randn(2, 1, 32, 32, generator=g)).clamp(0, 1)
    assert build_loss("l1")(a, b).item() == pytest.approx((a - b).abs().mean().item(), rel=1e-6)
    assert build_loss("mse")(a, b).item() == pytest.approx(((a - b) ** 2).mean().item(), rel=1e-6)
    ref = np.mean([
        structural_similarity(ai[0].numpy(), bi[0].numpy(), data_range=1.0, gaussian_weights=True, sigma=1.5,
                              use_sample_covariance=False)
        for ai, bi in zip(a, b, strict=True)
    ])
    assert build_loss("ssim")(a, b).item() == pytest.approx(1 - ref, abs=2e-3)
    assert build_loss("ssim")(a, a).item() == pytest.approx(0.0, abs=1e-5)


def test_deep_supervision_weighting() -> None:
    x, y = _pair(5)
    aux = [x * 0.5, -x]
    base = build_loss("bce_dice")
    parts = [base(o, y).item() for o in (x, *aux)]
    ds = DeepSupervisionLoss(base, "halving")
    assert ds([x, *aux], y).item() == pytest.approx(parts[0] + 0.5 * parts[1] + 0.25 * parts[2], rel=1e-6)
    assert ds(x, y).item() == pytest.approx(parts[0], rel=1e-9)
    norm = DeepSupervisionLoss(base, [1.0, 0.2], normalize=True)
    assert norm([x, *aux], y).item() == pytest.approx((parts[0] + parts[1] + 0.2 * parts[2]) / 2.2, rel=1e-6)
    assert aux_weights("equal", 3) == [1.0, 1.0, 1.0]
    assert aux_weights([0.4], 3) == [0.4, 0.4, 0.4]
    with pytest.raises(ConfigError):
        aux_weights("quadratic", 2)
