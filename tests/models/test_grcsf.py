"""GRCSF: the shared model contract, the GCU, the RCU and the MAE it carries."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from medattn.errors import ConfigError, MedattnIOError
from medattn.models import create
from medattn.models.encoders import list_encoders
from medattn.models.grcsf import GCU, GRCSF, RCU
from medattn.models.mae import MAE

from .tester import SegmentationModelTester

SMALL_MAE = {"patch_size": 16, "embed_dim": 32, "depth": 1, "num_heads": 2, "decoder_dim": 32,
             "decoder_depth": 1, "decoder_heads": 2}
SMALL = {"encoder_options": {"channels": (8, 16, 24, 32, 48)}, "decoder_channels": (32, 24, 16, 8),
         "mae_options": SMALL_MAE, "rcu_dim": 16, "rcu_heads": 2}


class TestGRCSF(SegmentationModelTester):
    model_name = "grcsf"
    options = SMALL


def small(**kw) -> GRCSF:
    torch.manual_seed(0)
    return create("grcsf", **{**SMALL, **kw})


@pytest.mark.parametrize("encoder", ["resnet34", "mobilenet_v2"])
def test_zoo_encoders_plug_in(encoder):
    """Any registered encoder works: GCUs follow its channels and reductions."""
    if encoder not in list_encoders():
        pytest.skip(f"{encoder} encoder not available")
    net = small(encoder=encoder, encoder_options={}).train()
    out = net(torch.rand(2, 3, 64, 64))
    assert [o.shape for o in out] == [(2, 1, 64, 64)] * len(out)
    sum(o.mean() for o in out).backward()
    assert all(p.grad is not None for n, p in net.named_parameters() if p.requires_grad and "gcus" in n)


# --------------------------------------------------------------------------- GCU


def test_gcu_recovers_detail_that_pooling_discards():
    """Two inputs with identical 2x2 averages differ only in what downsampling throws away."""
    torch.manual_seed(0)
    gcu = GCU(4, 6, ratio=2).eval()
    base = torch.rand(1, 4, 16, 16)
    checker = torch.tensor([[1.0, -1.0], [-1.0, 1.0]]).repeat(8, 8)
    other = base + 0.5 * checker
    torch.testing.assert_close(F.avg_pool2d(base, 2), F.avg_pool2d(other, 2))
    coarse = torch.rand(1, 6, 8, 8)
    with torch.no_grad():
        a, b = gcu(base, coarse), gcu(other, coarse)
    assert a.shape == (1, 6, 8, 8)
    assert (a - b).abs().max() > 1e-3


def test_gcu_detail_path_is_lossless():
    """Eq. (1)-(2): pixel-unshuffled high frequencies plus the pooled image give back the input."""
    fine = torch.rand(2, 3, 8, 12)
    low = F.avg_pool2d(fine, 2)
    high = fine - F.interpolate(low, scale_factor=2, mode="nearest")
    rebuilt = F.pixel_shuffle(F.pixel_unshuffle(high, 2), 2) + F.interpolate(low, scale_factor=2, mode="nearest")
    torch.testing.assert_close(rebuilt, fine)


# --------------------------------------------------------------------------- RCU


def test_rcu_shapes_and_importance_range():
    torch.manual_seed(0)
    rcu = RCU(channels=8, backbone_channels=12, patch_size=16, stride=4, dim=16, num_heads=2).eval()
    feat, res, back = torch.rand(2, 8, 16, 24), torch.rand(2, 1, 64, 96), torch.rand(2, 12, 2, 3)
    with torch.no_grad():
        out, s = rcu(feat, res, back)
    assert out.shape == feat.shape
    assert s.shape == (2, 1, 4, 6)
    assert ((s > 0) & (s < 1)).all()


def test_rcu_output_depends_on_the_residual_map():
    torch.manual_seed(0)
    rcu = RCU(8, 12, patch_size=16, stride=4, dim=16, num_heads=2).eval()
    feat, back = torch.rand(1, 8, 16, 16), torch.rand(1, 12, 2, 2)
    res = torch.rand(1, 1, 64, 64)
    res2 = res.clone()
    res2[..., :16, :16] += 3.0  # one patch
    with torch.no_grad():
        assert not torch.allclose(rcu(feat, res, back)[0], rcu(feat, res2, back)[0])


def test_rcu_unimportant_patches_are_ignored():
    """With every importance score ~0, Eqs. (7)-(8) give the residual map no say."""
    torch.manual_seed(0)
    rcu = RCU(8, 12, patch_size=16, stride=4, dim=16, num_heads=2).eval()
    with torch.no_grad():
        rcu.score[-1].bias.fill_(-60.0)
        rcu.score[-1].weight.zero_()
        feat, back = torch.rand(1, 8, 16, 16), torch.rand(1, 12, 2, 2)
        a, _ = rcu(feat, torch.rand(1, 1, 64, 64), back)
        b, _ = rcu(feat, torch.rand(1, 1, 64, 64) * 5, back)
    torch.testing.assert_close(a, b, atol=1e-5, rtol=0)


def test_rcu_rejects_patch_not_multiple_of_stride():
    with pytest.raises(ConfigError, match="multiple of the feature stride"):
        RCU(8, 8, patch_size=10, stride=4)


# --------------------------------------------------------------------------- MAE inside GRCSF


def test_mae_is_frozen_and_stays_in_eval():
    net = small().train()
    assert not net.mae.training
    assert not any(p.requires_grad for p in net.mae.parameters())
    out = net(torch.rand(2, 3, 64, 64))
    sum(o.mean() for o in out).backward()
    assert all(p.grad is None for p in net.mae.parameters())


def test_attention_map_is_importance_weighted_residual():
    net = small().eval()
    x = torch.rand(1, 3, 40, 56)
    with torch.no_grad():
        att = net.attention_map(x)
        padded = F.pad(x, (0, 8, 0, 24), mode="reflect")
        _, _, s, r = net._run(padded)
    assert att.shape == (1, 1, 40, 56)
    assert s.shape == (1, 1, 4, 4)  # 16-pixel patches of the 64x64 padded input
    ref = s.repeat_interleave(16, 2).repeat_interleave(16, 3) * r
    torch.testing.assert_close(att, ref[..., :40, :56])


def test_residual_map_comes_from_the_mae():
    net = small().eval()
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        r = net.mae.residual_map(x, n_masks=net.mae_masks)
        torch.testing.assert_close(net.residual_map(x), r / r.mean())


def _save_mae(path, mae: MAE) -> None:
    save_file(mae.state_dict(), str(path), metadata={"mae_options": json.dumps(mae.options)})


def test_loads_mae_weights_and_options_from_file(tmp_path):
    torch.manual_seed(5)
    mae = MAE(**{**SMALL_MAE, "embed_dim": 48}, in_channels=3)
    path = tmp_path / "mae.safetensors"
    _save_mae(path, mae)
    opts = {k: v for k, v in SMALL.items() if k != "mae_options"}
    net = create("grcsf", mae=str(path), **opts)
    assert net.mae.embed_dim == 48
    for k, v in mae.state_dict().items():
        assert torch.equal(net.mae.state_dict()[k], v)
    # a 1-channel GRCSF uses an RGB MAE by repeating the grey channel
    grey = create("grcsf", mae=str(path), in_channels=1, **opts).eval()
    x = torch.rand(1, 1, 64, 64)
    with torch.no_grad():
        r = mae.eval().residual_map(x.expand(-1, 3, -1, -1))
        torch.testing.assert_close(grey.residual_map(x), r / r.mean())


def test_rebuild_options_need_no_weight_files(tmp_path):
    torch.manual_seed(5)
    path = tmp_path / "mae.safetensors"
    _save_mae(path, MAE(**{**SMALL_MAE, "embed_dim": 48}))
    opts = {k: v for k, v in SMALL.items() if k != "mae_options"}
    net = create("grcsf", mae=str(path), **opts).eval()
    path.unlink()  # the trained model must not need the MAE file any more
    again = create("grcsf", **{**opts, **net.rebuild_options}).eval()
    again.load_state_dict(net.state_dict())
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(net(x), again(x))


def test_mismatched_mae_file_is_a_clear_error(tmp_path):
    path = tmp_path / "mae.safetensors"
    save_file(MAE(**SMALL_MAE).state_dict(), str(path))  # no metadata: options must be given
    with pytest.raises(ConfigError, match="do not fit the MAE"):
        create("grcsf", mae=str(path), mae_options={**SMALL_MAE, "embed_dim": 64})


def test_missing_mae_file_names_the_path(tmp_path):
    with pytest.raises(MedattnIOError, match=r"no-such\.safetensors: pretrained weights file not found"):
        create("grcsf", mae=str(tmp_path / "no-such.safetensors"))


def test_gcu_only_ablation_has_no_mae_and_no_rcu():
    """use_rcu=False (Table row "GCU only") removes exactly the MAE and the RCU."""
    full, gcu = small(), small(use_rcu=False)
    assert gcu.mae is None and gcu.rcu is None
    n = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert n(full) - n(gcu) == n(full.mae) + n(full.rcu)
    assert not any(k.startswith(("mae.", "rcu.")) for k in gcu.state_dict())
    assert gcu.stride == gcu.encoder.stride
    x = torch.rand(1, 3, 64, 48)
    gcu.eval()
    with torch.no_grad():
        prob = gcu.predict(x)
        assert prob.shape == (1, 1, 64, 48)
        torch.testing.assert_close(gcu.attention_map(x), prob)
    with pytest.raises(ConfigError, match="use_rcu"):
        gcu.residual_map(x)
    gcu.train()
    outs = gcu(x)
    assert isinstance(outs, list) and len(outs) == 3
