"""HLF-Net (paper 004): the shared model contract, the HFE/LFE blocks, ablation switches, encoder loading."""

from __future__ import annotations

import pytest
import torch
from tests.models.tester import SegmentationModelTester
from torch import nn

from medattn.errors import ConfigError
from medattn.models import create, model_info
from medattn.models.hlfnet import HFE, LFE, HLFEncoder, HLFNet


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


class TestHLFNet(SegmentationModelTester):
    model_name = "hlfnet"
    paper_params = 5_500_000


class TestResUnet28(SegmentationModelTester):
    """The residual blocks under the shared contract (gradients, determinism, ONNX); 8 channels for speed."""

    model_name = "res_unet28"
    options = {"base_width": 8}
    paper_params = 6_200_000
    param_options = {}
    param_tolerance = 0.02


class TestHLFNetDeepSupervision(SegmentationModelTester):
    model_name = "hlfnet"
    options = {"deep_supervision": True}
    in_channels_cases = (3,)
    onnx = False


class TestHLFNetOnMobileNet(SegmentationModelTester):
    """The HFE decoder on a zoo encoder (strides 2..32): logits up-sampled from stride 2."""

    model_name = "hlfnet"
    options = {"encoder": "mobilenet_v2", "deep_supervision": True}
    onnx = False


# -- HFE -------------------------------------------------------------------
def test_hfe_with_zero_recalibration_is_plain_double_gating():
    """Zeroed channel/spatial convs give sigmoid(0) = 0.5, so both branches are 1.5 * Y."""
    torch.manual_seed(0)
    hfe = HFE(8).eval()
    for conv in (hfe.channel[1], hfe.channel[3], hfe.spatial):
        nn.init.zeros_(conv.weight)
        nn.init.zeros_(conv.bias)
    y = torch.randn(2, 8, 10, 12)
    expected = hfe.fuse(torch.cat([1.5 * y, 1.5 * y], dim=1))
    torch.testing.assert_close(hfe(y), expected)
    torch.testing.assert_close(hfe.last_map, torch.full((2, 1, 10, 12), 0.5))


def test_hfe_matches_the_papers_formulas():
    """Y~_c = (1 + sigmoid(W2 relu(W1 avg(Y)))) Y and Y~_s = (1 + sigmoid(Ws Y)) Y, recomputed by hand."""
    torch.manual_seed(1)
    hfe = HFE(6).eval()
    y = torch.randn(1, 6, 7, 5)
    w1, b1 = hfe.channel[1].weight.flatten(1), hfe.channel[1].bias
    w2, b2 = hfe.channel[3].weight.flatten(1), hfe.channel[3].bias
    z = torch.sigmoid(w2 @ torch.relu(w1 @ y.mean((2, 3))[0] + b1) + b2)       # (6,)
    s = torch.sigmoid(torch.einsum("c,chw->hw", hfe.spatial.weight.flatten(), y[0]) + hfe.spatial.bias)
    yc = (1 + z)[:, None, None] * y[0]
    ys = (1 + s)[None] * y[0]
    expected = hfe.fuse(torch.cat([yc, ys])[None])
    torch.testing.assert_close(hfe(y), expected, rtol=1e-5, atol=1e-5)


# -- LFE -------------------------------------------------------------------
def test_lfe_semantic_map_shape_and_residual_gating():
    torch.manual_seed(0)
    lfe = LFE(3, 16).eval()
    x = torch.rand(2, 3, 22, 18)           # odd H/4: the mini encoder-decoder must still fit
    out = lfe(x)
    assert out.shape == (2, 16, 22, 18)
    m = lfe.last_map
    assert m.shape == (2, 1, 22, 18) and (m > 0).all() and (m < 1).all()
    torch.testing.assert_close(out, (1 + m) * lfe.trunk(x))


def test_lfe_semantic_branch_uses_its_skip():
    """The H/2 skip matters: zeroing the deepest conv still leaves an input-dependent map."""
    torch.manual_seed(0)
    lfe = LFE(3, 8).eval()
    conv = lfe.semantic.down2[0]
    nn.init.zeros_(conv.weight)
    x1, x2 = torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        assert not torch.allclose(lfe.semantic(x1), lfe.semantic(x2))


def test_lfe_off_is_the_trunk_alone():
    lfe = LFE(3, 8, use_semantic=False).eval()
    x = torch.rand(1, 3, 16, 16)
    assert lfe.semantic is None
    torch.testing.assert_close(lfe(x), lfe.trunk(x))


# -- ablations ---------------------------------------------------------------
ABLATIONS = {  # registry name -> (use_hfe, use_lfe, Table 1 parameter count or None)
    "hlfnet": (True, True, 5_500_000),
    "hlfnet_no_hfe": (False, True, 3_800_000),
    "hlfnet_no_lfe": (True, False, 3_600_000),
    "hlfnet_plain": (False, False, None),
}


@pytest.mark.parametrize("name", list(ABLATIONS))
def test_ablation_variants_have_the_documented_architecture(name):
    use_hfe, use_lfe, paper = ABLATIONS[name]
    net = create(name)
    assert (net.use_hfe, net.use_lfe) == (use_hfe, use_lfe)
    n_hfe = sum(isinstance(m, HFE) for m in net.modules())
    n_sem = sum(isinstance(m, LFE) and m.semantic is not None for m in net.modules())
    assert n_hfe == (4 if use_hfe else 0)
    assert n_sem == (5 if use_lfe else 0)
    if paper is not None:
        assert model_info(name).paper_params == paper
        assert abs(n_params(net) - paper) / paper < 0.10


def test_ablation_parameter_counts_add_up():
    """Each switch removes exactly its modules' parameters, whatever the other switch says."""
    full, no_hfe, no_lfe, plain = (n_params(create(n)) for n in ABLATIONS)
    net = create("hlfnet")
    hfe = sum(n_params(m) for m in net.modules() if isinstance(m, HFE))
    sem = sum(n_params(m.semantic) for m in net.modules() if isinstance(m, LFE))
    assert full - no_hfe == hfe and no_lfe - plain == hfe
    assert full - no_lfe == sem and no_hfe - plain == sem
    # the plain network is the 16-channel U-Net the paper's Unet-28 row scales up
    assert 1_800_000 < plain < 2_100_000


def test_base_width_scales_the_network():
    assert n_params(create("hlfnet", base_width=8)) < n_params(create("hlfnet")) / 3


# -- encoder -----------------------------------------------------------------
def test_encoder_features_and_strides():
    enc = HLFEncoder(3)
    feats = enc(torch.rand(1, 3, 64, 48))
    assert [f.shape[1] for f in feats] == enc.out_channels == [16, 32, 64, 128, 256]
    assert [64 // f.shape[2] for f in feats] == enc.reductions == [1, 2, 4, 8, 16]
    net = create("hlfnet")
    assert net.encoder_stages is net.encoder.stages and len(net.encoder_stages) == 5


def test_pretrained_encoder_round_trip(tmp_path):
    from safetensors.torch import save_file

    torch.manual_seed(3)
    donor = create("hlfnet", in_channels=1)
    with torch.no_grad():
        for p in donor.encoder.parameters():
            p.add_(torch.randn_like(p))
    path = tmp_path / "encoder.safetensors"
    save_file({k: v.contiguous() for k, v in donor.encoder.state_dict().items()}, str(path))
    torch.manual_seed(4)
    net = create("hlfnet", in_channels=1, pretrained_encoder=str(path))
    for k, v in donor.encoder.state_dict().items():
        assert torch.equal(net.encoder.state_dict()[k], v), k
    # keys written with the model's "encoder." prefix (a full-model checkpoint's sub-keys) also load
    torch.save({f"encoder.{k}": v for k, v in donor.encoder.state_dict().items()}, tmp_path / "enc.pth")
    net2 = create("hlfnet", in_channels=1, pretrained_encoder=str(tmp_path / "enc.pth"))
    assert torch.equal(net2.encoder.stages[4].trunk[0][0].weight, donor.encoder.stages[4].trunk[0][0].weight)


def test_pretrained_encoder_mismatch_is_a_clear_error(tmp_path):
    torch.save(HLFEncoder(3, use_lfe=False).state_dict(), tmp_path / "plain.pth")
    with pytest.raises(ConfigError, match="missing keys"):
        create("hlfnet", pretrained_encoder=str(tmp_path / "plain.pth"))


def test_attention_maps_exposed_after_forward():
    net = HLFNet().eval()
    with torch.no_grad():
        net(torch.rand(1, 3, 32, 32))
    maps = net.attention_maps()
    assert sum(".semantic" not in k and "encoder" in k for k in maps) == 5
    assert sum("decoder" in k for k in maps) == 4
    assert all(((m >= 0) & (m <= 1)).all() for m in maps.values())


def test_zoo_encoder_with_imagenet_weights(shared_data):
    path = shared_data / "pretrained" / "mobilenet_v2_imagenet.pth"
    if not path.is_file():
        pytest.skip(f"{path} is not available")
    from medattn.models.encoders import load_state_dict_file

    net = create("hlfnet", encoder="mobilenet_v2", pretrained_encoder=str(path))
    sd = load_state_dict_file(path)
    assert net.stride == 32 and len(net.decoder) == 4
    assert torch.equal(net.encoder.state_dict()["features.18.0.weight"], sd["features.18.0.weight"])


def test_zoo_encoder_options_normalise_the_input_for_imagenet_weights():
    """``encoder_options={"normalize": "imagenet"}`` standardises inside the encoder, not the keys."""
    torch.manual_seed(0)
    plain = create("hlfnet", encoder="mobilenet_v2").eval()
    normed = create("hlfnet", encoder="mobilenet_v2", encoder_options={"normalize": "imagenet"}).eval()
    assert normed.state_dict().keys() == plain.state_dict().keys()
    normed.load_state_dict(plain.state_dict())
    x = torch.rand(1, 3, 64, 64)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        torch.testing.assert_close(normed(x), plain((x - mean) / std))
        assert not torch.allclose(normed(x), plain(x))
    with pytest.raises(ConfigError, match="encoder_options"):
        create("hlfnet", encoder_options={"normalize": "imagenet"})


def test_lfe_switch_needs_the_lfe_encoder():
    with pytest.raises(ConfigError, match="use_lfe"):
        create("hlfnet_no_lfe", encoder="mobilenet_v2")


def test_small_hlfnet_learns_a_synthetic_mask():
    """A few Adam steps fit a bright-disk mask: the gated paths pass useful gradients."""
    torch.manual_seed(0)
    yy, xx = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    centres = [(10, 12), (20, 18), (14, 22), (22, 9)]
    masks = torch.stack([((yy - cy) ** 2 + (xx - cx) ** 2 < 36).float() for cy, cx in centres])[:, None]
    images = (masks * 0.6 + 0.2 * torch.rand(4, 1, 32, 32)).expand(4, 3, 32, 32)
    net = create("hlfnet", base_width=4).train()
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    losses = []
    for _ in range(30):
        opt.zero_grad()
        loss = nn.functional.binary_cross_entropy_with_logits(net(images), masks)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


# -- the paper's baselines: Unet-28 and Res-Unet-28 ---------------------------
@pytest.mark.parametrize(("name", "paper"), [("unet28", 5_900_000), ("res_unet28", 6_200_000)])
def test_table1_baselines_match_the_papers_parameter_counts(name, paper):
    net = create(name)
    assert model_info(name).paper_params == paper
    assert abs(n_params(net) - paper) / paper < 0.02
    assert not net.use_hfe and not net.use_lfe
    assert net.encoder.out_channels == [28, 56, 112, 224, 448]


def test_res_unet28_is_unet28_with_residual_shortcuts():
    from medattn.models.hlfnet import ResidualBlock

    plain, res = create("unet28"), create("res_unet28")
    blocks = [m for m in res.modules() if isinstance(m, ResidualBlock)]
    assert len(blocks) == 9  # 5 encoder stages + 4 decoder stages
    shortcuts = sum(n_params(b.shortcut) for b in blocks)
    assert shortcuts > 0 and n_params(res) - n_params(plain) == shortcuts
    # the residual path really adds the block input
    b = ResidualBlock(8, 8).eval()
    x = torch.rand(1, 8, 6, 6)
    with torch.no_grad():
        torch.testing.assert_close(b(x), torch.relu(b.conv2(b.conv1(x)) + x))


def test_plain_block_keeps_the_shipped_state_dict_keys():
    keys = set(create("hlfnet").state_dict())
    assert "encoder.stages.0.trunk.0.0.weight" in keys and "decoder.0.conv.1.0.weight" in keys


def test_unknown_block_is_a_config_error():
    with pytest.raises(ConfigError, match="block"):
        create("hlfnet", block="bottleneck")


def test_four_input_channels():
    net = create("hlfnet", in_channels=4).eval()
    assert net.encoder.stages[0].trunk[0][0].in_channels == 4
    with torch.no_grad():
        assert net(torch.rand(1, 4, 48, 64)).shape == (1, 1, 48, 64)
