"""ResNet and ResNeXt encoders in torchvision's module layout.

The modules carry torchvision's names (``conv1``, ``bn1``, ``layer1.0.conv2``,
...), so a torchvision ImageNet state dict loads after dropping ``fc.*``;
timm's ResNet/ResNeXt checkpoints use the same names.

Features (finest first), all variants::

    reductions   = [2, 4, 8, 16, 32]
    out_channels = [64, 64, 128, 256, 512]        resnet34
                   [64, 256, 512, 1024, 2048]     resnet50, resnext50_32x4d
                   [32, 128, 256, 512, 1024]      resnext_lite (widths configurable)

References: He et al., CVPR 2016 (ResNet); Xie et al., CVPR 2017 (ResNeXt,
aggregated transformations as grouped convolutions).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from medattn.models.encoders import register_encoder
from medattn.models.encoders.base import Encoder


def _bn_conv(cin: int, cout: int, k: int, stride: int = 1, groups: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, groups=groups, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with an identity (or 1x1 projection) shortcut."""

    expansion = 1

    def __init__(self, cin: int, planes: int, stride: int = 1, downsample: nn.Module | None = None,
                 groups: int = 1, base_width: int = 64) -> None:
        super().__init__()
        if groups != 1 or base_width != 64:
            raise ValueError("BasicBlock supports only groups=1, base_width=64")
        self.conv1 = _bn_conv(cin, planes, 3, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _bn_conv(planes, planes, 3)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        idt = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + idt)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (grouped for ResNeXt), 1x1 expand; stride on the 3x3 (torchvision v1.5).

    The inner width is ``planes * base_width / 64 * groups``: ``groups=32,
    base_width=4`` is ResNeXt's 32x4d cardinality/width.
    """

    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int = 1, downsample: nn.Module | None = None,
                 groups: int = 1, base_width: int = 64) -> None:
        super().__init__()
        width = int(planes * (base_width / 64.0)) * groups
        self.conv1 = _bn_conv(cin, width, 1)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = _bn_conv(width, width, 3, stride, groups)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = _bn_conv(width, planes * self.expansion, 1)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        idt = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + idt)


class ResNetEncoder(Encoder):
    """ResNet / ResNeXt trunk without pooling and classifier.

    Args:
        block: :class:`BasicBlock` or :class:`Bottleneck`.
        layers: blocks per stage (``[3, 4, 6, 3]`` for ResNet-34/50).
        in_channels: image channels; 1-channel models take a 3-channel stem
            from pretrained weights by summing it over RGB.
        groups, width_per_group: ResNeXt cardinality and per-group width.
        stem_channels: channels of the 7x7 stem (64 in torchvision).
        planes: per-stage base width (``planes * expansion`` channels out).
    """

    def __init__(self, block: type[BasicBlock] | type[Bottleneck], layers: Sequence[int], in_channels: int = 3,
                 groups: int = 1, width_per_group: int = 64, stem_channels: int = 64,
                 planes: Sequence[int] = (64, 128, 256, 512)) -> None:
        super().__init__()
        if len(layers) != 4 or len(planes) != 4:
            raise ValueError("ResNetEncoder needs four stages (layers and planes of length 4)")
        self.groups, self.base_width = groups, width_per_group
        self._expansion = block.expansion
        self.conv1 = nn.Conv2d(in_channels, stem_channels, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(stem_channels)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.inplanes = stem_channels
        self.layer1 = self._make_layer(block, planes[0], layers[0])
        self.layer2 = self._make_layer(block, planes[1], layers[1], stride=2)
        self.layer3 = self._make_layer(block, planes[2], layers[2], stride=2)
        self.layer4 = self._make_layer(block, planes[3], layers[3], stride=2)
        self.out_channels = [stem_channels, *(p * self._expansion for p in planes)]
        self.reductions = [2, 4, 8, 16, 32]
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def _make_layer(self, block: type[BasicBlock] | type[Bottleneck], planes: int, blocks: int,
                    stride: int = 1) -> nn.Sequential:
        out = planes * self._expansion
        down = None
        if stride != 1 or self.inplanes != out:
            down = nn.Sequential(nn.Conv2d(self.inplanes, out, 1, stride=stride, bias=False), nn.BatchNorm2d(out))
        kw = {"groups": self.groups, "base_width": self.base_width}
        mods = [block(self.inplanes, planes, stride, down, **kw)]
        self.inplanes = out
        mods += [block(out, planes, **kw) for _ in range(1, blocks)]
        return nn.Sequential(*mods)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        f0 = self.relu(self.bn1(self.conv1(x)))
        f1 = self.layer1(self.maxpool(f0))
        f2 = self.layer2(f1)
        f3 = self.layer3(f2)
        f4 = self.layer4(f3)
        return [f0, f1, f2, f3, f4]


@register_encoder("resnet34")
def resnet34(in_channels: int = 3) -> ResNetEncoder:
    """ResNet-34: 21.28M parameters (torchvision's 21,797,672 minus the 1000-class fc)."""
    return ResNetEncoder(BasicBlock, [3, 4, 6, 3], in_channels)


@register_encoder("resnet50")
def resnet50(in_channels: int = 3) -> ResNetEncoder:
    """ResNet-50: 23.51M parameters (torchvision's 25,557,032 minus the fc)."""
    return ResNetEncoder(Bottleneck, [3, 4, 6, 3], in_channels)


@register_encoder("resnext50_32x4d")
def resnext50_32x4d(in_channels: int = 3) -> ResNetEncoder:
    """ResNeXt-50 32x4d: 22.98M parameters (torchvision's 25,028,904 minus the fc)."""
    return ResNetEncoder(Bottleneck, [3, 4, 6, 3], in_channels, groups=32, width_per_group=4)


@register_encoder("resnext_lite")
def resnext_lite(in_channels: int = 3, layers: Sequence[int] = (2, 2, 2, 2),
                 planes: Sequence[int] = (32, 64, 128, 256), groups: int = 32, width_per_group: int = 4,
                 stem_channels: int = 32) -> ResNetEncoder:
    """A light ResNeXt for compact models such as BSANet: 3.35M parameters by default.

    ResNeXt-50 32x4d at half the width and depth (two grouped bottlenecks per
    stage); out channels ``[stem_channels, *(4 * p for p in planes)]`` =
    ``[32, 128, 256, 512, 1024]``. All widths are options, e.g.
    ``planes=(24, 48, 96, 192)`` gives 1.9M parameters.
    """
    return ResNetEncoder(Bottleneck, list(layers), in_channels, groups=groups, width_per_group=width_per_group,
                         stem_channels=stem_channels, planes=planes)
