"""Encoders: feature interface, parameter counts against torchvision, pretrained loading."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from medattn.errors import ConfigError
from medattn.models.encoders import create_encoder, list_encoders

OURS = ("resnet34", "resnet50", "resnext50_32x4d", "resnext_lite", "vgg19", "vgg19_bn", "mobilenet_v2")

# torchvision's published totals (with the ImageNet classifier) and the size of that classifier.
_FC = {"resnet34": 512, "resnet50": 2048, "resnext50_32x4d": 2048, "mobilenet_v2": 1280}
TORCHVISION_PARAMS = {
    "resnet34": (21_797_672, _FC["resnet34"] * 1000 + 1000),
    "resnet50": (25_557_032, _FC["resnet50"] * 1000 + 1000),
    "resnext50_32x4d": (25_028_904, _FC["resnext50_32x4d"] * 1000 + 1000),
    "mobilenet_v2": (3_504_872, _FC["mobilenet_v2"] * 1000 + 1000),
    # classifier: 25088 -> 4096 -> 4096 -> 1000 linear layers
    "vgg19": (143_667_240, 25088 * 4096 + 4096 + 4096 * 4096 + 4096 + 4096 * 1000 + 1000),
    "vgg19_bn": (143_678_248, 25088 * 4096 + 4096 + 4096 * 4096 + 4096 + 4096 * 1000 + 1000),
}

MOBILENET = "pretrained/mobilenet_v2_imagenet.pth"


def _n_params(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def test_all_encoders_registered():
    assert set(OURS) <= set(list_encoders())


@pytest.mark.parametrize("name", sorted(TORCHVISION_PARAMS))
def test_parameter_count_matches_torchvision(name):
    total, classifier = TORCHVISION_PARAMS[name]
    assert _n_params(create_encoder(name)) == total - classifier


def test_resnext_lite_is_light_and_configurable():
    enc = create_encoder("resnext_lite")
    assert 2_000_000 <= _n_params(enc) <= 4_000_000
    grouped = [m for m in enc.modules() if isinstance(m, torch.nn.Conv2d) and m.groups > 1]
    assert grouped and all(m.groups == 32 for m in grouped)
    small = create_encoder("resnext_lite", planes=(16, 32, 64, 128), groups=8)
    assert small.out_channels == [32, 64, 128, 256, 512]
    assert _n_params(small) < _n_params(enc)


@pytest.mark.parametrize("name", OURS)
@pytest.mark.parametrize("in_channels", [1, 3])
def test_feature_interface(name, in_channels):
    enc = create_encoder(name, in_channels=in_channels).eval()
    assert len(enc.out_channels) == len(enc.reductions) == 5
    assert enc.reductions == [2, 4, 8, 16, 32]
    with torch.no_grad():
        feats = enc(torch.rand(2, in_channels, 64, 96))
    assert [f.shape[1] for f in feats] == enc.out_channels
    for f, r in zip(feats, enc.reductions, strict=True):
        assert f.shape[0] == 2 and f.shape[-2:] == (64 // r, 96 // r)


def test_vgg_pre_pool_features():
    enc = create_encoder("vgg19_bn", pool_last=False).eval()
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        feats = enc(x)
        pooled = create_encoder("vgg19_bn")
        pooled.load_state_dict(enc.state_dict())
        stages = pooled.eval()(x)
    assert enc.reductions == [1, 2, 4, 8, 16]
    assert [f.shape[-1] for f in feats] == [32, 16, 8, 4, 2]
    # each default stage output is its pre-pool activation, max-pooled
    for pre, post in zip(feats, stages, strict=True):
        torch.testing.assert_close(F.max_pool2d(pre, 2), post)


def _classifier_keys(name: str) -> dict[str, torch.Tensor]:
    """The ImageNet head a torchvision file carries (the encoder must drop it)."""
    if name.startswith(("resnet", "resnext")):
        return {"fc.weight": torch.zeros(1000, 4), "fc.bias": torch.zeros(1000)}
    return {"classifier.1.weight": torch.zeros(1000, 4), "classifier.1.bias": torch.zeros(1000)}


def _assert_same_weights(enc: torch.nn.Module, ref: dict[str, torch.Tensor]) -> None:
    own = enc.state_dict()
    assert set(own) == set(ref)
    for k, v in own.items():
        assert torch.equal(v, ref[k]), k


@pytest.mark.parametrize(("name", "suffix"), [*((n, ".pth") for n in OURS),
                                              ("resnext_lite", ".safetensors"), ("vgg19_bn", ".safetensors")])
def test_loads_torchvision_layout_file(tmp_path, name, suffix):
    torch.manual_seed(0)
    src = {k: v.clone() for k, v in create_encoder(name).state_dict().items()}
    for v in src.values():  # make every tensor distinct from a fresh init
        if v.is_floating_point():
            v.copy_(torch.randn_like(v).abs() + 0.5)
    src_file = {**src, **_classifier_keys(name)}
    path = tmp_path / f"{name}{suffix}"
    if suffix == ".pth":
        torch.save({"state_dict": src_file}, path)  # wrapped, as many checkpoints are
    else:
        from safetensors.torch import save_file

        save_file(src_file, str(path))
    torch.manual_seed(1)
    enc = create_encoder(name, pretrained=str(path))
    _assert_same_weights(enc, src)


def _to_timm_mobilenet(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """torchvision -> timm ``mobilenetv2_100`` names, written from timm's block table."""
    repeats = [1, 2, 3, 4, 3, 3, 1]
    stage_of = {}
    n = 1
    for i, r in enumerate(repeats):
        for j in range(r):
            stage_of[n] = (i, j)
            n += 1
    ds = {"conv.0.0": "conv_dw", "conv.0.1": "bn1", "conv.1": "conv_pw", "conv.2": "bn2"}
    ir = {"conv.0.0": "conv_pw", "conv.0.1": "bn1", "conv.1.0": "conv_dw", "conv.1.1": "bn2",
          "conv.2": "conv_pwl", "conv.3": "bn3"}
    out = {}
    for k, v in sd.items():
        parts = k.split(".")
        idx = int(parts[1])
        if idx == 0:
            new = {"0": "conv_stem", "1": "bn1"}[parts[2]] + "." + ".".join(parts[3:])
        elif idx == 18:
            new = {"0": "conv_head", "1": "bn2"}[parts[2]] + "." + ".".join(parts[3:])
        else:
            i, j = stage_of[idx]
            table = ds if i == 0 else ir
            inner = next(p for p in sorted(table, key=len, reverse=True) if ".".join(parts[2:]).startswith(p + "."))
            new = f"blocks.{i}.{j}.{table[inner]}." + ".".join(parts[2:])[len(inner) + 1:]
        out[new] = v
    out["classifier.weight"] = torch.zeros(1000, 1280)
    out["classifier.bias"] = torch.zeros(1000)
    return out


@pytest.mark.parametrize("name", ["resnet34", "resnext_lite", "vgg19_bn", "mobilenet_v2"])
def test_loads_timm_layout_file(tmp_path, name):
    torch.manual_seed(0)
    src = {k: torch.randn_like(v) if v.is_floating_point() else v
           for k, v in create_encoder(name).state_dict().items()}
    if name == "mobilenet_v2":
        timm = _to_timm_mobilenet(src)
        assert "blocks.3.2.conv_pwl.weight" in timm and "conv_head.weight" in timm
    elif name.startswith("vgg"):  # timm's VGG keeps `features.N`, its head is pre_logits + head
        timm = {**src, "pre_logits.fc1.weight": torch.zeros(8, 512, 7, 7), "head.fc.weight": torch.zeros(10, 8)}
    else:  # timm's ResNet/ResNeXt use torchvision's names
        timm = {**src, "fc.weight": torch.zeros(10, 4), "fc.bias": torch.zeros(10)}
    path = tmp_path / "timm.pth"
    torch.save(timm, path)
    enc = create_encoder(name, pretrained=str(path))
    _assert_same_weights(enc, src)


def test_mismatched_file_names_missing_and_unexpected_keys(tmp_path):
    sd = create_encoder("resnext_lite").state_dict()
    sd.pop("layer4.1.bn2.weight")
    sd["decoder.extra.weight"] = torch.zeros(3)
    path = tmp_path / "bad.pth"
    torch.save(sd, path)
    with pytest.raises(ConfigError) as err:
        create_encoder("resnext_lite", pretrained=str(path))
    msg = str(err.value)
    assert str(path) in msg
    assert "1 missing keys: layer4.1.bn2.weight" in msg
    assert "1 unexpected keys: decoder.extra.weight" in msg


def test_wrong_architecture_file_is_rejected(tmp_path):
    path = tmp_path / "g16.pth"
    torch.save(create_encoder("resnext_lite", groups=16).state_dict(), path)
    with pytest.raises(ConfigError, match=r"shape mismatches: layer1\.0\.conv1\.weight"):
        create_encoder("resnext_lite", pretrained=str(path))


def test_one_channel_model_sums_rgb_stem(tmp_path):
    src = create_encoder("resnext_lite").state_dict()
    path = tmp_path / "rgb.pth"
    torch.save(src, path)
    enc = create_encoder("resnext_lite", in_channels=1, pretrained=str(path))
    torch.testing.assert_close(enc.conv1.weight, src["conv1.weight"].sum(1, keepdim=True))
    # a gray image replicated to RGB gives the same features as the 1-channel model
    rgb = create_encoder("resnext_lite", pretrained=str(path)).eval()
    gray = torch.rand(1, 1, 64, 64)
    torch.testing.assert_close(enc.eval()(gray)[-1], rgb(gray.expand(-1, 3, -1, -1))[-1], atol=1e-4, rtol=1e-4)


# -- the real ImageNet MobileNetV2 ---------------------------------------------------------

def _reference_mobilenet(sd: dict[str, torch.Tensor], x: torch.Tensor) -> list[torch.Tensor]:
    """MobileNetV2 written out with torch.nn.functional straight from the state dict."""
    def bn(x, p):
        return F.batch_norm(x, sd[p + ".running_mean"], sd[p + ".running_var"], sd[p + ".weight"],
                            sd[p + ".bias"], training=False, eps=1e-5)

    def conv(x, p, stride=1, dw=False):
        w = sd[p + ".weight"]
        return F.conv2d(x, w, stride=stride, padding=w.shape[-1] // 2, groups=w.shape[0] if dw else 1)

    strides = {2: 2, 4: 2, 7: 2, 14: 2}  # first block of each down-sampling stage
    taps = {1, 3, 6, 13, 18}
    out = []
    x = F.relu6(bn(conv(x, "features.0.0", 2), "features.0.1"))
    for n in range(1, 18):
        p = f"features.{n}.conv"
        s = strides.get(n, 1)
        if n == 1:
            y = F.relu6(bn(conv(x, p + ".0.0", s, dw=True), p + ".0.1"))
            y = bn(conv(y, p + ".1"), p + ".2")
        else:
            y = F.relu6(bn(conv(x, p + ".0.0"), p + ".0.1"))
            y = F.relu6(bn(conv(y, p + ".1.0", s, dw=True), p + ".1.1"))
            y = bn(conv(y, p + ".2"), p + ".3")
        x = x + y if s == 1 and x.shape == y.shape else y
        if n in taps:
            out.append(x)
    out.append(F.relu6(bn(conv(x, "features.18.0"), "features.18.1")))
    return out


@pytest.mark.data
def test_real_mobilenet_v2_weights_load_and_match_reference(shared_data):
    path = shared_data / MOBILENET
    raw = torch.load(path, map_location="cpu", weights_only=True)
    assert len(raw) == 314
    enc = create_encoder("mobilenet_v2", pretrained=str(path))
    own = enc.state_dict()
    assert set(own) == set(raw) - {"classifier.1.weight", "classifier.1.bias"}
    for k, v in own.items():
        assert torch.equal(v, raw[k]), k
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        feats = enc.eval()(x)
        ref = _reference_mobilenet(raw, x)
    for f, r in zip(feats, ref, strict=True):
        torch.testing.assert_close(f, r, atol=1e-5, rtol=1e-5)


@pytest.mark.data
def test_folded_batch_norm_is_frozen_after_loading(shared_data):
    path = str(shared_data / MOBILENET)
    enc = create_encoder("mobilenet_v2", pretrained=path)
    bns = [m for m in enc.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert all(not m.weight.requires_grad and not m.bias.requires_grad for m in bns)
    enc.train()
    assert all(not m.training for m in bns)
    before = {k: v.clone() for k, v in enc.state_dict().items()}
    x = torch.rand(2, 3, 64, 64)
    train_out = enc(x)[-1]
    assert all(torch.equal(v, before[k]) for k, v in enc.state_dict().items()), "running stats changed"
    torch.testing.assert_close(train_out, enc.eval()(x)[-1])
    # the conv weights still train
    train_out.sum().backward()
    assert enc.features[0][0].weight.grad is not None
    # opting out keeps batch norm trainable
    free = create_encoder("mobilenet_v2", pretrained=path, freeze_bn=False).train()
    assert all(m.training and m.weight.requires_grad for m in free.modules() if isinstance(m, torch.nn.BatchNorm2d))


def test_imagenet_input_normalization_is_applied_and_not_saved():
    import torch

    from medattn.models.encoders import INPUT_NORMS, create_encoder

    torch.manual_seed(0)
    plain = create_encoder("resnet34").eval()
    normed = create_encoder("resnet34", normalize="imagenet").eval()
    normed.load_state_dict(plain.state_dict())
    assert set(normed.state_dict()) == set(plain.state_dict())  # no new checkpoint keys
    x = torch.rand(1, 3, 64, 64)
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in INPUT_NORMS["imagenet"])
    with torch.no_grad():
        for a, b in zip(normed(x), plain((x - mean) / std), strict=True):
            torch.testing.assert_close(a, b)
    gray = create_encoder("resnet34", in_channels=1, normalize="imagenet")
    assert gray.input_mean.shape == (1, 1, 1, 1)
