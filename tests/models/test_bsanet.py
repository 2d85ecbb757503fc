"""BSANet (paper 000): the shared model contract plus ISAM, FSAM, ARM and Swin transfer checks."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from tests.models.tester import SegmentationModelTester

from medattn.errors import ConfigError
from medattn.models import create
from medattn.models.blocks.swin import SwinStage
from medattn.models.bsanet import ARM, FSAM, ISAM, point_sample, resize_bias_table


class TestBSANet(SegmentationModelTester):
    model_name = "bsanet"
    paper_params = 6_360_000


def test_isam_is_residual_around_swin_blocks_and_conv() -> None:
    """f_ISAM = Conv(STB_6(...STB_1(f_0))) + f_0: with the Conv block silenced the output is f_0."""
    torch.manual_seed(0)
    isam = ISAM(32, 2, depth=6, window_size=4).eval()
    f0 = torch.randn(2, 32, 9, 11)
    with torch.no_grad():
        out = isam(f0)
        f6 = f0.permute(0, 2, 3, 1)
        for block in isam.blocks:
            f6 = block(f6)
        torch.testing.assert_close(out, isam.conv(f6.permute(0, 3, 1, 2)) + f0)
        isam.conv[1].weight.zero_()
        isam.conv[1].bias.zero_()
        torch.testing.assert_close(isam(f0), f0)
    assert [b.shift_size for b in isam.blocks] == [0, 2, 0, 2, 0, 2]


def test_fsam_follows_the_paper_equations() -> None:
    torch.manual_seed(0)
    fsam = FSAM(16, 8, reduction=4).eval()
    f = torch.randn(2, 16, 7, 6)
    with torch.no_grad():
        d = fsam.dconv(fsam.conv(f))
        assert fsam.dconv[0].dilation == (2, 2)
        gap = d.flatten(2).mean(-1)
        gmp = d.flatten(2).max(-1).values
        alpha = torch.sigmoid(fsam.fc(gap) + fsam.fc(gmp))  # shared FC on both descriptors
        f1 = alpha[:, :, None, None] * f
        expected = fsam.shortcut(f1) + fsam.out_conv(f1)
        torch.testing.assert_close(fsam(f), expected)
        assert fsam(f).shape == (2, 8, 7, 6)
        assert FSAM(8, 8).shortcut.__class__.__name__ == "Identity"


def test_point_sample_reads_cell_centres_exactly() -> None:
    grid = torch.arange(12.0).reshape(1, 1, 3, 4)
    ys, xs = torch.meshgrid(torch.arange(3.0), torch.arange(4.0), indexing="ij")
    coords = torch.stack([(xs.flatten() + 0.5) / 4, (ys.flatten() + 0.5) / 3], dim=1)[None]
    torch.testing.assert_close(point_sample(grid, coords), grid.flatten(2))


@pytest.mark.parametrize("num_classes", [1, 3])
def test_arm_replaces_exactly_the_most_uncertain_points(num_classes: int) -> None:
    torch.manual_seed(0)
    arm = ARM(fine_channels=4, num_classes=num_classes, num_points=20).eval()
    with torch.no_grad():
        arm.predictor.weight.zero_()
        arm.predictor.bias.fill_(42.0)  # point head outputs a marker value
        coarse = torch.randn(2, num_classes, 6, 5)
        fine = torch.randn(2, 4, 12, 10)
        out = arm.render(coarse, [fine], steps=1)
    up = F.interpolate(coarse, scale_factor=2.0, mode="bilinear", align_corners=False)
    replaced = (out == 42.0).all(dim=1)
    assert out.shape == up.shape
    assert replaced.flatten(1).sum(1).tolist() == [20, 20]
    torch.testing.assert_close(out[~replaced.unsqueeze(1).expand_as(out)], up[~replaced.unsqueeze(1).expand_as(up)])
    if num_classes == 1:
        unc = -up[:, 0].abs()
    else:
        top2 = up.topk(2, dim=1).values
        unc = top2[:, 1] - top2[:, 0]
    for b in range(2):
        assert unc[b][replaced[b]].min() >= unc[b][~replaced[b]].max()


def test_arm_point_predictions_land_on_their_cells() -> None:
    """A refined cell (row i, col j) holds the point head's prediction at its centre ((j+.5)/w, (i+.5)/h)."""
    torch.manual_seed(0)
    arm = ARM(fine_channels=3, num_classes=1, num_points=7).eval()
    coarse = torch.randn(1, 1, 6, 5)
    fine = torch.randn(1, 3, 24, 20)
    with torch.no_grad():
        out = arm.render(coarse, [fine], steps=1)  # 12 x 10
        up = F.interpolate(coarse, scale_factor=2.0, mode="bilinear", align_corners=False)
        cells = (out != up)[0, 0].nonzero().tolist()
        assert 0 < len(cells) <= 7
        for i, j in cells:
            c = torch.tensor([[[(j + 0.5) / 10, (i + 0.5) / 12]]])
            expected = arm.point_head(point_sample(fine, c), point_sample(coarse, c))
            torch.testing.assert_close(out[0, 0, i, j], expected[0, 0, 0])


def test_training_points_and_point_loss() -> None:
    torch.manual_seed(0)
    net = create("bsanet", arm_train_points=256).train()
    x = torch.rand(2, 3, 72, 88)  # padded to 96x96 inside the model
    outs = net(x)
    coords, logits = net.last_points
    assert coords.shape == (2, 256, 2) and logits.shape == (2, 1, 256)
    # coordinates cover the unpadded image: [0, 1] there, not [0, 72/96]
    assert coords.min() >= 0 and coords.max() <= 1 and coords[..., 0].max() > 0.9 and coords[..., 1].max() > 0.9
    ones = torch.ones(2, 1, 72, 88)
    torch.testing.assert_close(net.point_loss(ones), F.softplus(-logits).mean())
    loss = net.point_loss(ones) + sum(o.mean() for o in outs)
    loss.backward()
    assert net.arm.fcs[0].weight.grad is not None and net.arm.fcs[0].weight.grad.abs().sum() > 0
    net.eval()
    with torch.no_grad():
        net(x)
    assert net.last_points is None


def test_point_loss_multiclass_uses_labels() -> None:
    torch.manual_seed(0)
    net = create("bsanet", num_classes=3, arm_train_points=64).train()
    net(torch.rand(2, 3, 64, 64))
    logits = net.last_points[1]
    labels = torch.full((2, 64, 64), 2, dtype=torch.long)
    torch.testing.assert_close(net.point_loss(labels), F.cross_entropy(logits, torch.full((2, 64), 2)))


def test_bsanet_runs_on_the_swin_t_encoder() -> None:
    net = create("bsanet", encoder="swin_t").eval()
    assert net.isam_level == 2 and net.deep_levels == [3] and net.skip_levels == [1, 0]
    with torch.no_grad():
        assert net(torch.rand(1, 3, 64, 80)).shape == (1, 1, 64, 80)


def test_resize_bias_table() -> None:
    t = torch.randn(13 * 13, 3)
    assert resize_bias_table(t, 7) is t
    const = torch.full((13 * 13, 2), 0.25)
    torch.testing.assert_close(resize_bias_table(const, 8), torch.full((15 * 15, 2), 0.25))


@pytest.fixture(scope="module")
def swin_files(tmp_path_factory) -> dict[str, object]:
    """Swin-T stage-3 blocks (6 x width 384, 12 heads, window 7) with random weights, saved in
    timm layout (``layers.2.blocks.J``) and torchvision layout (``features.5.J``, ``mlp.0/3``)."""
    torch.manual_seed(3)
    stage = SwinStage(384, 384, depth=6, num_heads=12, window_size=7, downsample=False)
    sd = {f"layers.2.{k}": torch.randn_like(v) for k, v in stage.state_dict().items()}
    tv = {}
    for k, v in sd.items():
        p = k.split(".")
        rest = ".".join(p[4:]).replace("mlp.fc1", "mlp.0").replace("mlp.fc2", "mlp.3")
        tv[f"features.5.{p[3]}.{rest}"] = v
    root = tmp_path_factory.mktemp("swin")
    torch.save(sd, root / "timm.pth")
    torch.save(tv, root / "torchvision.pth")
    return {"timm": root / "timm.pth", "torchvision": root / "torchvision.pth", "sd": sd}


@pytest.mark.parametrize("layout", ["timm", "torchvision"])
def test_isam_loads_swin_stage3_exactly_at_swin_width(swin_files, layout) -> None:
    path, sd = swin_files[layout], swin_files["sd"]
    net = create("bsanet", isam_dim=384, isam_heads=12, window_size=7, swin_pretrained=str(path))
    for j, block in enumerate(net.isam.blocks):
        for name, value in block.state_dict().items():
            assert torch.equal(value, sd[f"layers.2.blocks.{j}.{name}"]), (j, name)


def test_isam_weight_selection_from_wider_swin(swin_files) -> None:
    path, sd = swin_files["timm"], swin_files["sd"]
    net = create("bsanet", swin_pretrained=str(path))  # 160 channels, 5 heads, window 8
    src = {k.split("layers.2.blocks.1.")[1]: v for k, v in sd.items() if k.startswith("layers.2.blocks.1.")}
    block = net.isam.blocks[1]
    ch = torch.linspace(0, 383, 160).round().long()
    heads = torch.linspace(0, 11, 5).round().long()
    torch.testing.assert_close(block.norm1.weight, src["norm1.weight"][ch])
    # q of selected head 2 (source head heads[2]) reads the selected residual channels
    q_rows = heads[2] * 32 + torch.arange(32)
    torch.testing.assert_close(block.attn.qkv.weight[64:96], src["attn.qkv.weight"][q_rows][:, ch])
    v_rows = 2 * 384 + heads[4] * 32 + torch.arange(32)
    torch.testing.assert_close(block.attn.qkv.bias[2 * 160 + 128:], src["attn.qkv.bias"][v_rows])
    table = src["attn.relative_position_bias_table"][:, heads]
    torch.testing.assert_close(block.attn.relative_position_bias_table, resize_bias_table(table, 8))
    assert block.mlp.fc1.weight.shape == (640, 160)


def test_swin_pretrained_errors_are_clear(swin_files, tmp_path) -> None:
    path = swin_files["timm"]
    with pytest.raises(ConfigError, match="stage 1 has 0 blocks"):
        create("bsanet", swin_pretrained=str(path), swin_stage=1)
    with pytest.raises(ConfigError, match="wider"):
        create("bsanet", isam_dim=512, isam_heads=16, swin_pretrained=str(path))
    with pytest.raises(Exception, match="not found"):
        create("bsanet", swin_pretrained=str(tmp_path / "missing.pth"))


@pytest.mark.parametrize("size", [(64, 64), (80, 100)])
def test_backward_at_two_sizes_multiclass(size) -> None:
    torch.manual_seed(0)
    net = create("bsanet", num_classes=2, arm_train_points=128).train()
    outs = net(torch.rand(2, 3, *size))
    assert all(o.shape == (2, 2, *size) for o in outs)
    labels = torch.randint(0, 2, (2, *size))
    loss = sum(F.cross_entropy(o, labels) for o in outs) + net.point_loss(labels)
    loss.backward()
    grads = [p.grad for p in net.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


@pytest.mark.data
def test_bsanet_on_the_real_imagenet_mobilenet_v2(shared_data) -> None:
    """Any encoder plugs in; the offline ImageNet MobileNetV2 loads into BSANet's encoder."""
    path = shared_data / "pretrained" / "mobilenet_v2_imagenet.pth"
    if not path.is_file():
        pytest.skip(f"{path} is not available")
    net = create("bsanet", encoder="mobilenet_v2", encoder_pretrained=str(path)).eval()
    sd = torch.load(path, map_location="cpu", weights_only=True)
    torch.testing.assert_close(net.encoder.state_dict()["features.0.0.weight"], sd["features.0.0.weight"])
    with torch.no_grad():
        assert net(torch.rand(1, 3, 64, 96)).shape == (1, 1, 64, 96)


def test_bf16_autocast_keeps_point_coordinates_in_float32() -> None:
    torch.manual_seed(0)
    net = create("bsanet", arm_train_points=64).train()
    target = (torch.rand(2, 1, 64, 64) > 0.5).float()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        net(torch.rand(2, 3, 64, 64))
        loss = net.point_loss(target)
    assert net.last_points[0].dtype == torch.float32
    assert loss.dtype == torch.float32 and torch.isfinite(loss)


@pytest.mark.parametrize("switch", ["use_isam", "use_fsam", "use_arm"])
def test_ablation_switches(switch: str) -> None:
    torch.manual_seed(0)
    full = create("bsanet")
    net = create("bsanet", **{switch: False}).train()
    n_full, n = (sum(p.numel() for p in m.parameters()) for m in (full, net))
    assert n < n_full
    outs = net(torch.rand(2, 3, 64, 80))
    assert all(o.shape == (2, 1, 64, 80) for o in outs) and len(outs) == (3 if switch == "use_arm" else 4)
    sum(o.pow(2).mean() for o in outs).backward()
    assert all(p.grad is not None for p in net.parameters())
    if switch == "use_arm":
        assert net.arm is None and net.last_points is None
        with pytest.raises(RuntimeError, match="point_loss"):
            net.point_loss(torch.zeros(2, 1, 64, 80))
    with torch.no_grad():
        assert net.eval()(torch.rand(1, 3, 64, 80)).shape == (1, 1, 64, 80)
    if switch == "use_isam":
        with pytest.raises(ConfigError, match="use_isam"):
            create("bsanet", use_isam=False, swin_pretrained="x.pth")


@pytest.mark.parametrize(("name", "module"), [("bsanet_no_isam", "isam"), ("bsanet_no_fsam", "fsam"),
                                              ("bsanet_no_arm", "arm")])
def test_registered_ablations_remove_exactly_one_module(name: str, module: str) -> None:
    """Each ablation's parameter count is BSANet's minus that module (plus FSAM's Conv-BN-ReLU stand-in)."""
    from medattn.models.bsanet import ConvBNReLU

    def count(m: torch.nn.Module | None) -> int:
        return sum(p.numel() for p in m.parameters()) if m is not None else 0

    full, net = create("bsanet"), create(name)
    replacement = {"isam": 0, "arm": 0, "fsam": count(ConvBNReLU(160, 96))}[module]
    assert count(net) == count(full) - count(getattr(full, module)) + replacement
    assert type(getattr(net, module)) is not type(getattr(full, module))
    # every other part is built the same (same names and shapes)
    others = {k: v.shape for k, v in full.state_dict().items() if not k.startswith(module + ".")}
    assert others == {k: v.shape for k, v in net.state_dict().items() if not k.startswith(module + ".")}
