"""EFEN (paper 001): the shared model contract, positional encoding, cross-attention skips, encoder loading."""

from __future__ import annotations

import math

import pytest
import torch
from tests.models.tester import SegmentationModelTester
from torch import nn

from medattn.errors import ConfigError
from medattn.models import create
from medattn.models.blocks.positional import (
    PositionalEncoding2d,
    sinusoidal_1d,
    sinusoidal_2d,
    sinusoidal_flat,
)
from medattn.models.efen import EFEN, CrossAttentionSkip
from medattn.models.encoders import create_encoder


class TestEFEN(SegmentationModelTester):
    model_name = "efen"
    paper_params = 29_440_000
    # Exporting the 29M-parameter graph takes ~10 s on a loaded CPU; the same graph at
    # reduced widths is exported in test_onnx_export_matches_torch below.
    onnx = False


# -- positional encoding (eqs. 6-7, Box 1) -----------------------------------
def _box1(pos: int, i: int, d: int) -> float:
    """Box 1 entry by its formula: sin for even i, cos for odd i, frequency 10000^(-2*floor(i/2)/d)."""
    angle = pos / 10000 ** (2 * (i // 2) / d)
    return math.sin(angle) if i % 2 == 0 else math.cos(angle)


@pytest.mark.parametrize("d", [6, 7])
def test_sinusoidal_1d_matches_box1(d):
    pe = sinusoidal_1d(11, d)
    expected = torch.tensor([[_box1(p, i, d) for i in range(d)] for p in range(11)])
    torch.testing.assert_close(pe, expected, rtol=0, atol=1e-6)


def test_sinusoidal_2d_rows_then_columns():
    h, w, c = 5, 7, 10
    pe = sinusoidal_2d(h, w, c)
    assert pe.shape == (c, h, w)
    for y in range(h):
        for x in range(w):
            row = [_box1(y, i, 5) for i in range(5)]
            col = [_box1(x, i, 5) for i in range(5)]
            torch.testing.assert_close(pe[:, y, x], torch.tensor(row + col), rtol=0, atol=1e-6)


def test_sinusoidal_flat_uses_raster_positions():
    pe = sinusoidal_flat(3, 4, 6)
    torch.testing.assert_close(pe[:, 2, 1], torch.tensor([_box1(2 * 4 + 1, i, 6) for i in range(6)]),
                               rtol=0, atol=1e-6)


@pytest.mark.parametrize("mode", ["2d", "1d"])
def test_positional_encoding_module_adds_the_table(mode):
    pe = PositionalEncoding2d(mode)
    x = torch.randn(2, 8, 6, 5)
    fn = sinusoidal_2d if mode == "2d" else sinusoidal_flat
    torch.testing.assert_close(pe(x), x + fn(6, 5, 8))
    assert not list(pe.parameters())
    with pytest.raises(ValueError, match="mode"):
        PositionalEncoding2d("3d")


# -- improved skip connection (eqs. 5-9) ---------------------------------------
def _skip(pool: int = 1, scale: str = "dk") -> CrossAttentionSkip:
    torch.manual_seed(0)
    return CrossAttentionSkip(enc_ch=12, dec_ch=10, out_ch=6, attn_ch=4, pool=pool, attn_scale=scale).eval()


@pytest.mark.parametrize("pool", [1, 2])
def test_attention_rows_are_distributions_and_shapes(pool):
    skip = _skip(pool)
    f_e, f_d = torch.randn(2, 12, 16, 12), torch.randn(2, 10, 8, 6)
    with torch.no_grad():
        a, v = skip.attention(skip.pos(f_e), skip.pos(f_d))
        out = skip(f_e, f_d)
    n = (8 // pool) * (6 // pool)
    assert a.shape == (2, n, n) and v.shape == (2, 4, 8 // pool, 6 // pool)
    assert (a >= 0).all()
    torch.testing.assert_close(a.sum(-1), torch.ones(2, n))
    assert out.shape == (2, skip.out_channels, 16, 12) and skip.out_channels == 12 + 6


@pytest.mark.parametrize("scale", ["dk", "sqrt"])
def test_skip_matches_the_equations(scale):
    """Recompute eqs. 5-9 from the module's weights with plain matrix algebra."""
    skip = _skip(scale=scale)
    f_e, f_d = torch.randn(1, 12, 8, 6), torch.randn(1, 10, 4, 3)
    with torch.no_grad():
        fe = f_e + sinusoidal_2d(8, 6, 12)                                  # eq. 6
        fd = f_d + sinusoidal_2d(4, 3, 10)                                  # eq. 7
        tokens = fd[0].flatten(1).t()                                       # (12, 10)
        q = tokens @ skip.w_q.weight.flatten(1).t()
        k = tokens @ skip.w_k.weight.flatten(1).t()
        v = skip.op1(fe)[0].flatten(1).t() @ skip.w_v.weight.flatten(1).t()  # eq. 9, (12, 4)
        d_k = v.shape[1]
        a = torch.softmax(q @ k.t() / (d_k if scale == "dk" else math.sqrt(d_k)), dim=-1)  # eq. 8
        av = (a @ v).t().reshape(1, 4, 4, 3)
        gate = nn.functional.interpolate(skip.op2(av), size=(8, 6), mode="bilinear", align_corners=False)
        up = skip.op3(nn.functional.interpolate(fd, size=(8, 6), mode="bilinear", align_corners=False))
        expected = torch.cat([fe * gate, up], dim=1)                        # eq. 5
        torch.testing.assert_close(skip(f_e, f_d), expected, rtol=1e-5, atol=1e-5)


def test_bad_attention_scale_is_rejected():
    with pytest.raises(ConfigError, match="attn_scale"):
        CrossAttentionSkip(4, 4, 4, 4, attn_scale="half")


# -- whole network -------------------------------------------------------------
def _tiny_vgg(in_channels: int = 3):
    cfg = (8, "M", 8, "M", 16, "M", 16, "M", 16, "M")
    from medattn.models.encoders.vgg import VGGEncoder

    return VGGEncoder(in_channels, pool_last=False, cfg=cfg)


def _tiny_efen(**kw) -> EFEN:
    torch.manual_seed(0)
    return EFEN(encoder=_tiny_vgg(), decoder_widths=(16, 8, 8, 8), reextract_widths=(8, 8, 8, 16, 16), **kw)


def test_attention_pooling_per_stage():
    net = _tiny_efen()
    # decoder stages go from stride 8 to 1; tokens stay at stride >= 8 of the input
    assert [s.skip.pool for s in net.decoder1] == [1, 1, 2, 4]
    assert [s.skip.pool for s in _tiny_efen(attn_stride=2).decoder2] == [1, 1, 1, 1]


def test_deep_supervision_and_attention_maps():
    net = _tiny_efen(deep_supervision=True).train()
    outs = net(torch.rand(2, 3, 40, 24))
    assert isinstance(outs, list) and len(outs) == 2 and all(o.shape == (2, 1, 40, 24) for o in outs)
    maps = net.eval().attention_maps()
    assert len(maps) == 8 and all(m.shape[1] == 1 for m in maps.values())


def test_encoder_without_the_needed_strides_is_rejected():
    with pytest.raises(ConfigError, match="strides"):
        EFEN(encoder=create_encoder("vgg19"))  # pool_last=True: strides 2..32


def test_pretrained_vgg19_in_torchvision_layout(tmp_path):
    """A torchvision-style VGG-19 file (features.* + classifier.*) loads into EFEN's encoder."""
    torch.manual_seed(7)
    donor = create_encoder("vgg19", in_channels=3)
    sd = {k: v + 0.5 for k, v in donor.state_dict().items()}
    sd["classifier.0.weight"] = torch.zeros(2, 2)
    torch.save(sd, tmp_path / "vgg19.pth")
    net = create("efen", in_channels=1, pretrained_encoder=str(tmp_path / "vgg19.pth"))
    # 1-channel model: the RGB stem is summed over input channels
    torch.testing.assert_close(net.encoder.features[0].weight, sd["features.0.weight"].sum(1, keepdim=True))
    torch.testing.assert_close(net.encoder.features[34].weight, sd["features.34.weight"])


@pytest.mark.parametrize("pos", ["2d", "1d"])
def test_onnx_export_matches_torch(tmp_path, pos):
    """Every EFEN op (positional tables, pooled attention, transposed convs) through ONNX Runtime."""
    pytest.importorskip("onnxruntime")
    from medattn.models.export import export_onnx, max_abs_difference

    net = _tiny_efen(pos_encoding=pos)
    with torch.no_grad():  # non-trivial batch-norm statistics, so eval mode is not the identity
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
    net.eval()
    path = export_onnx(net, tmp_path / "efen.onnx", size=(64, 48))
    x = torch.rand(1, 3, 64, 48, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert net(x).abs().max() > 1e-3  # a meaningful comparison, not two near-zero maps
    assert max_abs_difference(net, path, x) < 1e-4


def test_small_efen_learns_a_synthetic_mask():
    """A few Adam steps fit a bright-disk mask through both U-Nets and the attention skips."""
    yy, xx = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    centres = [(10, 12), (20, 18), (14, 22), (22, 9)]
    masks = torch.stack([((yy - cy) ** 2 + (xx - cx) ** 2 < 36).float() for cy, cx in centres])[:, None]
    torch.manual_seed(0)
    images = (masks * 0.6 + 0.2 * torch.rand(4, 1, 32, 32)).expand(4, 3, 32, 32)
    net = _tiny_efen().train()
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    losses = []
    for _ in range(30):
        opt.zero_grad()
        loss = nn.functional.binary_cross_entropy_with_logits(net(images), masks)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


# -- Table 1 ablation switches and the MobileNetV2 variant ---------------------
@pytest.mark.parametrize(("reextract", "improved", "n_skips"), [(False, False, 0), (True, False, 0), (True, True, 8)])
def test_ablation_switches_remove_what_they_name(reextract, improved, n_skips):
    net = _tiny_efen(reextract=reextract, improved_skip=improved)
    assert sum(isinstance(m, CrossAttentionSkip) for m in net.modules()) == n_skips
    assert (net.decoder2 is not None) is reextract and (net.reextract is not None) is reextract
    assert all((s.skip is not None) is improved for s in net.decoder1)
    with torch.no_grad():
        assert net.eval()(torch.rand(1, 3, 40, 24)).shape == (1, 1, 40, 24)


def test_plain_skip_is_unet_concatenation():
    """improved_skip=False: F_j = Psi(concat(Phi(F_{j-1}), F_E)), U-Net's skip."""
    from medattn.models.efen import DecoderStage

    torch.manual_seed(0)
    stage = DecoderStage(10, 12, 6, 4, 1, "2d", "dk", improved_skip=False).eval()
    x, f_e = torch.randn(1, 10, 4, 3), torch.randn(1, 12, 8, 6)
    with torch.no_grad():
        torch.testing.assert_close(stage(x, f_e), stage.psi(torch.cat([stage.up(x), f_e], dim=1)))


def test_unet_baseline_is_encoder_decoder1_and_head_only():
    net = _tiny_efen(reextract=False, improved_skip=False)
    own = {name.split(".")[0] for name, _ in net.named_parameters()}
    assert own == {"encoder", "decoder1", "head"}
    with pytest.raises(ConfigError, match="deep_supervision"):
        _tiny_efen(reextract=False, deep_supervision=True)


def test_registered_table1_rows_grow_in_order():
    """efen_unet < efen_reextract < efen in parameters; each registered name sets its switches."""
    counts = {}
    for name, (reextract, improved) in {"efen_unet": (False, False), "efen_reextract": (True, False),
                                        "efen": (True, True)}.items():
        net = create(name)
        assert (net.decoder2 is not None, net.decoder1[0].skip is not None) == (reextract, improved)
        counts[name] = sum(p.numel() for p in net.parameters())
    assert counts["efen_unet"] < counts["efen_reextract"] < counts["efen"]
    assert abs(counts["efen"] - 29_440_000) <= 0.01 * 29_440_000  # paper Table 3: 29.44M


def test_mobilenet_v2_variant_strides_and_truncation():
    net = create("efen_mobilenet_v2").eval()
    enc = net.encoder
    assert enc.reductions == [1, 2, 4, 8, 16] and enc.out_channels == [32, 16, 24, 32, 96]
    assert len(enc.encoder.features) == 14  # the stride-32 stages (features 14-18) are dropped
    with pytest.raises(ConfigError, match="stem_width"):  # no silent stem: asked for by the variant only
        create("efen", encoder="mobilenet_v2")
    with torch.no_grad():
        feats = enc(torch.rand(1, 3, 64, 48))
    assert [tuple(f.shape[-2:]) for f in feats] == [(64 // s, 48 // s) for s in (1, 2, 4, 8, 16)]


def test_mobilenet_v2_variant_loads_the_imagenet_file_with_frozen_bn(shared_data):
    from medattn.models.encoders import load_state_dict_file

    mnv2_file = shared_data / "pretrained" / "mobilenet_v2_imagenet.pth"
    sd = load_state_dict_file(mnv2_file)
    net = create("efen_mobilenet_v2", pretrained_encoder=str(mnv2_file)).train()
    mnv2 = net.encoder.encoder
    torch.testing.assert_close(mnv2.features[13].conv[0][0].weight, sd["features.13.conv.0.0.weight"])
    bns = [m for m in mnv2.modules() if isinstance(m, nn.BatchNorm2d)]
    assert bns and all(not m.training and not m.weight.requires_grad for m in bns)  # folded BN (README)
    assert hasattr(mnv2, "input_mean")  # ImageNet normalisation inside the encoder
