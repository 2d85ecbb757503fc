"""LDCT denoisers in the zoo: shapes at odd sizes, residual form, gradients, attention blocks."""

from __future__ import annotations

import pytest
import torch

from medattn.models import create, list_models, model_info
from medattn.models.ldct_denoisers import (
    HU_SCALE,
    ChannelAttention,
    SpatialAttention,
    hu_to_input,
    output_to_hu,
)

SMALL = {
    "cadn": {"channels": [8, 16, 24], "blocks": [1, 1, 1]},
    "cadn_small": {"channels": [8, 16, 24], "blocks": [1, 1, 1]},
    "redcnn": {"channels": 8},
    "dncnn": {"depth": 5, "channels": 8},
}


def test_denoisers_are_registered_as_denoising() -> None:
    names = list_models(task="denoising")
    assert set(SMALL) <= set(names)
    for n in SMALL:
        assert model_info(n).input_size == (64, 64)


@pytest.mark.parametrize("name", sorted(SMALL))
@pytest.mark.parametrize("size", [(33, 47), (64, 64), (21, 18)])
def test_forward_backward_any_size(name: str, size: tuple[int, int]) -> None:
    torch.manual_seed(0)
    net = create(name, **SMALL[name]).train()
    x = torch.randn(2, 1, *size) * 0.3
    y = net(x)
    assert y.shape == x.shape
    loss = (y - x.detach()).pow(2).mean() + y.mean()
    loss.backward()
    grads = [p.grad for p in net.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert sum(float(g.abs().sum()) for g in grads) > 0


def test_cadn_starts_as_identity_and_is_residual() -> None:
    net = create("cadn", **SMALL["cadn"]).eval()
    x = torch.randn(1, 1, 30, 30)
    with torch.no_grad():
        assert torch.equal(net(x), x)  # zero-initialised noise head
        net.tail.bias.fill_(0.1)
        assert torch.allclose(net(x), x - 0.1)


def test_param_counts_match_papers() -> None:
    assert sum(p.numel() for p in create("redcnn").parameters()) == 1_848_865
    n = sum(p.numel() for p in create("dncnn").parameters())
    assert abs(n - 556_096) <= 64


def test_rejects_wrong_channels() -> None:
    with pytest.raises(ValueError, match=r"\(B, 1, H, W\)"):
        create("cadn", **SMALL["cadn"])(torch.zeros(1, 3, 16, 16))


def test_attention_blocks_weight_features() -> None:
    ca, sa = ChannelAttention(8), SpatialAttention()
    x = torch.randn(2, 8, 12, 12)
    yc, ys = ca(x), sa(x)
    # a gate in (0, 1) multiplies each channel / pixel: same signs, smaller magnitude
    assert yc.shape == ys.shape == x.shape
    assert torch.all(yc * x >= 0) and torch.all(yc.abs() <= x.abs() + 1e-6)
    ratio = yc / x
    assert torch.allclose(ratio, ratio[:, :, :1, :1].expand_as(ratio), atol=1e-5)  # one weight per channel
    r = ys / x
    assert torch.allclose(r, r[:, :1].expand_as(r), atol=1e-5)  # one weight per pixel


def test_hu_normalisation_round_trip() -> None:
    hu = torch.tensor([-1000.0, 0.0, 40.0])
    assert torch.allclose(hu_to_input(hu), torch.tensor([-1.0, 0.0, 0.04]))
    assert torch.allclose(output_to_hu(hu_to_input(hu)), hu) and HU_SCALE == 1000.0


def test_noise_estimate_and_bm3d_baseline() -> None:
    import numpy as np

    from medattn.denoise.apply import bm3d_denoise, estimate_noise_hu

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:64, :64] - 32
    clean = np.where(xx**2 + yy**2 < 26**2, 40.0, -1000.0).astype(np.float32)
    noisy = clean + rng.normal(0, 30, clean.shape).astype(np.float32)
    # white noise of 30 HU is recovered inside the body (the flat air would not bias it)
    assert abs(estimate_noise_hu(noisy) - 30) < 3
    pytest.importorskip("bm3d")
    out = bm3d_denoise(noisy)
    body = xx**2 + yy**2 < 20**2
    assert out.shape == noisy.shape and out.dtype == np.float32
    assert np.std((out - clean)[body]) < 0.5 * np.std((noisy - clean)[body])
