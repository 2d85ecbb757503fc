"""The model registry and the SegmentationModel contract, on the MONAI baselines."""

from __future__ import annotations

import pytest
import torch

from medattn.errors import ConfigError
from medattn.models import create, list_models, model_info


def test_baselines_registered():
    names = list_models()
    for name in ("unet", "attention_unet", "unetpp"):
        assert name in names
    assert list_models("unet*") == [n for n in names if n.startswith("unet")]


def test_unknown_model_suggests_close_names():
    with pytest.raises(ConfigError, match="did you mean unet"):
        model_info("unte")


@pytest.mark.parametrize("name", ["unet", "attention_unet", "unetpp"])
@pytest.mark.parametrize("in_channels", [1, 3])
def test_any_size_and_channels(name, in_channels):
    net = create(name, in_channels=in_channels, num_classes=2).eval()
    x = torch.rand(1, in_channels, 45, 67)
    y = net(x)
    assert isinstance(y, torch.Tensor)
    assert y.shape == (1, 2, 45, 67)


def test_deep_supervision_only_in_training():
    net = create("unetpp", in_channels=3, num_classes=1)
    net.train()
    outs = net(torch.rand(1, 3, 32, 32))
    assert isinstance(outs, list) and len(outs) == 4
    assert all(o.shape == (1, 1, 32, 32) for o in outs)
    net.eval()
    assert isinstance(net(torch.rand(1, 3, 32, 32)), torch.Tensor)


def test_wrong_channel_count_is_rejected():
    net = create("unet", in_channels=1)
    with pytest.raises(ValueError, match="1 input channel"):
        net(torch.rand(1, 3, 32, 32))
