"""CAWE (eqs. 1-2), Grad-CAM and eq. 7 against analytic references on a tiny CNN."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from medattn.enhance.cam import find_layer
from medattn.enhance.cawe import CAWE
from medattn.enhance.fusion import fuse
from medattn.enhance.gradcam import GradCAM
from medattn.errors import ConfigError


class TinyCNN(nn.Module):
    """conv-relu-conv-relu (the layer read), global average pooling, linear: dy_c/dF^k_ij = W[c, k] / (h w)."""

    def __init__(self, classes: int = 3) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(1, 8, 3, stride=2, padding=1), nn.ReLU(),
                                  nn.Conv2d(8, 6, 3, stride=2, padding=1), nn.ReLU())
        self.fc = nn.Linear(6, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.body(x).mean(dim=(2, 3)))


def _reference(feats: torch.Tensor, weights: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """ReLU(sum_k w_k F^k), bilinear to ``size``, min-max per image, written out independently."""
    cam = torch.einsum("bk,bkhw->bhw", weights, feats).clamp_min(0)
    cam = F.interpolate(cam[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]
    out = []
    for m in cam:
        out.append((m - m.min()) / (m.max() - m.min()) if m.max() > m.min() else torch.zeros_like(m))
    return torch.stack(out)


@pytest.fixture
def net_and_x() -> tuple[TinyCNN, torch.Tensor]:
    torch.manual_seed(0)
    return TinyCNN().eval(), torch.rand(2, 1, 20, 24)


def test_gradcam_matches_the_analytic_gradient(net_and_x) -> None:
    net, x = net_and_x
    feats = net.body(x).detach()
    hw = feats.shape[2] * feats.shape[3]
    for c in range(3):
        ref = _reference(feats, net.fc.weight[c].detach().expand(2, -1) / hw, (20, 24))
        got = GradCAM(net, "body.3")(x, [lambda row, c=c: row[c]])
        assert torch.allclose(got, ref, atol=1e-5)


def test_cawe_equals_gradcam_with_one_active_class(net_and_x) -> None:
    net, x = net_and_x
    with torch.no_grad():
        net.fc.weight.abs_()  # non-negative gradients: eq. 1's ReLU is then the identity
        net.fc.bias.copy_(torch.tensor([-20.0, 20.0, -20.0]))  # only class 1 is activated
    cawe = CAWE(net)  # default layer: the last convolution
    got = cawe(x)
    assert cawe.last_activated == [[1], [1]]
    assert torch.allclose(got, GradCAM(net, net.body[2])(x), atol=1e-5)
    assert got.shape == (2, 20, 24) and float(got.min()) == 0.0 and float(got.max()) == pytest.approx(1.0)


def test_cawe_sums_activated_classes_and_relus_gradients(net_and_x) -> None:
    net, x = net_and_x
    with torch.no_grad():
        net.fc.bias.copy_(torch.tensor([3.0, -30.0, 2.0]))  # classes 0 and 2 activated
    feats = net.body(x).detach()
    hw = feats.shape[2] * feats.shape[3]
    probs = torch.sigmoid(net(x)).detach()
    # d(sigma_0 + sigma_2)/dF^k_ij = sum_l sigma_l (1 - sigma_l) W[l, k] / (h w), the same at every cell
    grad = sum((probs[:, lab] * (1 - probs[:, lab]))[:, None] * net.fc.weight[lab].detach() for lab in (0, 2)) / hw
    cawe = CAWE(net, "body.3")
    got = cawe(x)
    assert cawe.last_activated == [[0, 2], [0, 2]]
    assert (grad < 0).any()  # so the ReLU of eq. 1 matters in this case
    assert torch.allclose(got, _reference(feats, grad.clamp_min(0), (20, 24)), atol=1e-5)
    # and it differs from the unrectified (Grad-CAM-style) weighting
    assert not torch.allclose(got, _reference(feats, grad, (20, 24)), atol=1e-3)


def test_cawe_falls_back_to_the_top_class(net_and_x) -> None:
    net, x = net_and_x
    with torch.no_grad():
        net.fc.bias.copy_(torch.tensor([-20.0, -10.0, -30.0]))
    cawe = CAWE(net)
    cawe(x)
    assert cawe.last_activated == [[], []]
    feats = net.body(x).detach()
    ref = _reference(feats, net.fc.weight[1].detach().clamp_min(0).expand(2, -1), (20, 24))
    assert torch.allclose(cawe(x), ref, atol=1e-5)


def test_layer_lookup_errors() -> None:
    net = TinyCNN()
    assert find_layer(net, "body.0") is net.body[0]
    with pytest.raises(ConfigError, match=r"no layer .body\.9."):
        find_layer(net, "body.9")
    with pytest.raises(ConfigError, match="no convolution"):
        find_layer(nn.Linear(2, 2))


def test_fusion_is_equation_7() -> None:
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    att = rng.random((5, 7)).astype(np.float32)
    for alpha in (0.0, 0.5, 0.8, 1.0):
        expect = alpha * img.astype(np.float64) + (1 - alpha) * att[..., None] * img
        out = fuse(img, att, alpha)
        assert out.dtype == np.uint8
        assert np.abs(out.astype(np.float64) - expect).max() <= 0.5 + 1e-6
    gray = rng.random((5, 7)).astype(np.float32)
    np.testing.assert_allclose(fuse(gray, att), 0.5 * gray + 0.5 * att * gray, rtol=1e-6)
    np.testing.assert_array_equal(fuse(img, np.ones((5, 7))), img)  # full attention keeps the image
    with pytest.raises(ConfigError, match="does not match"):
        fuse(img, att[:4])
    with pytest.raises(ConfigError, match="alpha"):
        fuse(img, att, 1.5)
