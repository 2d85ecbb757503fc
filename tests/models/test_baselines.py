"""The MONAI baselines through the shared per-model tester."""

from __future__ import annotations

from .tester import SegmentationModelTester


class TestUNet(SegmentationModelTester):
    model_name = "unet"


class TestAttentionUNet(SegmentationModelTester):
    model_name = "attention_unet"


class TestUNetPlusPlus(SegmentationModelTester):
    model_name = "unetpp"


class TestPraNet(SegmentationModelTester):
    model_name = "pranet"
    options = {"encoder": "resnext_lite"}  # the default ResNet-50 is exercised by the registry walk


def test_pranet_reverse_attention_weights_unsegmented_regions():
    """RA (PraNet Eq. 2) weights features by 1 - sigmoid(previous map): confident foreground is erased."""
    import torch

    from medattn.models.pranet import ReverseAttention

    ra = ReverseAttention(4, 8, 3, 1).eval()
    feat = torch.rand(1, 4, 8, 8)
    prev = torch.full((1, 1, 8, 8), -30.0)
    prev[..., :4] = 30.0  # left half already segmented with certainty
    seen = []
    ra.convs[0].register_forward_hook(lambda _m, inp, _o: seen.append(inp[0]))
    with torch.no_grad():
        out = ra(feat, prev)
    assert torch.allclose(seen[0][..., :4], torch.zeros(1), atol=1e-9)
    torch.testing.assert_close(seen[0][..., 4:], feat[..., 4:])
    assert out.shape == prev.shape


def test_pranet_on_the_imagenet_mobilenet_v2(shared_data):
    """The BSANet comparison's PraNet row: reverse attention on the same ImageNet MobileNetV2 encoder."""
    import torch

    from medattn.models import create
    from medattn.models.encoders import load_state_dict_file

    weights = shared_data / "pretrained" / "mobilenet_v2_imagenet.pth"
    net = create("pranet", encoder="mobilenet_v2", encoder_weights=str(weights),
                 encoder_options={"normalize": "imagenet"}).eval()
    sd = load_state_dict_file(weights)
    torch.testing.assert_close(net.encoder.features[18][0].weight, sd["features.18.0.weight"])
    assert net.rfb4.conv_res[0].in_channels == 1280 and hasattr(net.encoder, "input_mean")
    with torch.no_grad():
        assert net(torch.rand(1, 3, 64, 64)).shape == (1, 1, 64, 64)
