"""VGG-19 and VGG-19-BN encoders in torchvision's ``features.N`` layout.

The convolution stack is torchvision's ``features`` Sequential unchanged, so
ImageNet state dicts load after dropping ``classifier.*`` (timm's
``pre_logits.*`` / ``head.*`` are dropped too). It is split at each of the
five max-pools; by default every stage *ends* with its pool, which gives the
zoo's common strides::

    reductions   = [2, 4, 8, 16, 32]
    out_channels = [64, 128, 256, 512, 512]

With ``pool_last=False`` the features are taken *before* each pool instead
(strides 1..16, the classic U-Net-on-VGG skips).

Reference: Simonyan and Zisserman, ICLR 2015.
"""

from __future__ import annotations

import torch
from torch import nn

from medattn.models.encoders import register_encoder
from medattn.models.encoders.base import Encoder

# Configuration "E" of the paper (19 weight layers, 16 of them convolutions).
_VGG19 = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M")


class VGGEncoder(Encoder):
    """VGG convolution stack returning five stages.

    Args:
        in_channels: image channels (1-channel models sum the pretrained stem over RGB).
        batch_norm: insert BatchNorm after each convolution (VGG-19-BN).
        pool_last: end each stage with its max-pool (strides 2..32) rather than
            returning the pre-pool activation (strides 1..16).
    """

    def __init__(self, in_channels: int = 3, batch_norm: bool = False, pool_last: bool = True,
                 cfg: tuple = _VGG19) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        self._cuts: list[int] = []  # index of each max-pool in `features`
        c = in_channels
        for v in cfg:
            if v == "M":
                self._cuts.append(len(layers))
                layers.append(nn.MaxPool2d(2, 2))
                continue
            layers.append(nn.Conv2d(c, v, 3, padding=1))
            if batch_norm:
                layers.append(nn.BatchNorm2d(v))
            layers.append(nn.ReLU(inplace=True))
            c = v
        self.features = nn.Sequential(*layers)
        self.pool_last = pool_last
        self.out_channels = [v for i, v in enumerate(cfg) if v != "M" and cfg[i + 1] == "M"]
        self.reductions = [2, 4, 8, 16, 32] if pool_last else [1, 2, 4, 8, 16]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        start = 0
        for cut in self._cuts:
            end = cut + 1 if self.pool_last else cut
            for layer in self.features[start:end]:
                x = layer(x)
            feats.append(x)
            start = end
        return feats

    def remap_state_dict(self, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Drop torchvision's ``classifier.*`` and timm's ``pre_logits.*`` / ``head.*``."""
        return {k: v for k, v in super().remap_state_dict(state_dict).items() if not k.startswith("pre_logits.")}


@register_encoder("vgg19")
def vgg19(in_channels: int = 3, pool_last: bool = True) -> VGGEncoder:
    """VGG-19: 20.02M parameters (torchvision's 143,667,240 minus the classifier)."""
    return VGGEncoder(in_channels, batch_norm=False, pool_last=pool_last)


@register_encoder("vgg19_bn")
def vgg19_bn(in_channels: int = 3, pool_last: bool = True) -> VGGEncoder:
    """VGG-19 with batch norm: 20.04M parameters (torchvision's 143,678,248 minus the classifier)."""
    return VGGEncoder(in_channels, batch_norm=True, pool_last=pool_last)
