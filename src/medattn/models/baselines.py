"""Baselines every results table needs: U-Net, Attention U-Net, UNet++.

MONAI's implementations (``monai.networks.nets``) wrapped into the
:class:`~medattn.models.base.SegmentationModel` contract so that they take
any input size, 1 or 3 channels, and sit in the same registry.

References: Ronneberger et al., MICCAI 2015 (U-Net); Oktay et al., MIDL 2018
(Attention U-Net); Zhou et al., DLMIA 2018 (UNet++).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.networks import nets

from medattn.models.base import SegmentationModel
from medattn.models.registry import register_model


class MonaiUNet(SegmentationModel):
    """MONAI ``UNet`` (residual units, instance norm) as a zoo model."""

    def __init__(self, in_channels: int = 3, num_classes: int = 1,
                 channels: Sequence[int] = (32, 64, 128, 256, 512), num_res_units: int = 2,
                 norm: str = "batch", dropout: float = 0.0) -> None:
        super().__init__(in_channels, num_classes, stride=2 ** (len(channels) - 1))
        self.net = nets.UNet(2, in_channels, num_classes, channels=tuple(channels),
                             strides=(2,) * (len(channels) - 1), num_res_units=num_res_units,
                             norm=norm, dropout=dropout)

    def forward_logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class MonaiAttentionUNet(SegmentationModel):
    """MONAI ``AttentionUnet`` (additive attention gates on the skips)."""

    def __init__(self, in_channels: int = 3, num_classes: int = 1,
                 channels: Sequence[int] = (32, 64, 128, 256, 512), dropout: float = 0.0) -> None:
        super().__init__(in_channels, num_classes, stride=2 ** (len(channels) - 1))
        self.net = nets.AttentionUnet(2, in_channels, num_classes, channels=tuple(channels),
                                      strides=(2,) * (len(channels) - 1), dropout=dropout)

    def forward_logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class MonaiUNetPlusPlus(SegmentationModel):
    """MONAI ``BasicUNetPlusPlus``; nested skips give deep-supervision outputs in training."""

    def __init__(self, in_channels: int = 3, num_classes: int = 1,
                 features: Sequence[int] = (32, 32, 64, 128, 256, 32), deep_supervision: bool = True) -> None:
        super().__init__(in_channels, num_classes, stride=16, deep_supervision=deep_supervision)
        self.net = nets.BasicUNetPlusPlus(2, in_channels, num_classes, features=tuple(features),
                                          deep_supervision=deep_supervision)

    def forward_logits(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
        outs = self.net(x)
        # MONAI returns [x_0_4, x_0_3, x_0_2, x_0_1]: the deepest nest first.
        if self.deep_supervision and self.training:
            return outs[0], list(outs[1:])
        return outs[0]


@register_model("unet", input_size=(256, 256), paper="Ronneberger et al., MICCAI 2015")
def unet(**kwargs) -> MonaiUNet:
    """U-Net baseline (MONAI UNet, residual units, batch norm)."""
    return MonaiUNet(**kwargs)


@register_model("attention_unet", input_size=(256, 256), paper="Oktay et al., MIDL 2018")
def attention_unet(**kwargs) -> MonaiAttentionUNet:
    """Attention U-Net baseline (MONAI AttentionUnet)."""
    return MonaiAttentionUNet(**kwargs)


@register_model("unetpp", input_size=(256, 256), paper="Zhou et al., DLMIA 2018")
def unetpp(**kwargs) -> MonaiUNetPlusPlus:
    """UNet++ baseline (MONAI BasicUNetPlusPlus) with deep supervision in training."""
    return MonaiUNetPlusPlus(**kwargs)
