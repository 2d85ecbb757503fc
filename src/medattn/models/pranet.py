"""PraNet-style reverse-attention network (Fan et al., "PraNet: Parallel Reverse Attention
Network for Polyp Segmentation", MICCAI 2020).

On any zoo encoder (ResNet-50 by default, the paper uses Res2Net-50), the
three deepest features pass through receptive-field blocks (RFB), a
**parallel partial decoder** aggregates them into a coarse global map
``S_g`` at 1/8 resolution (paper Eq. 1 after Wu et al., CPD), and three
**reverse attention** modules refine it from coarse to fine: each weights
its side feature by ``A_i = 1 - sigmoid(S_{i+1})`` (paper Eq. 2), so it
looks at what the previous map has *not* yet segmented, and adds the
predicted residual to the up-sampled previous map.

The main output is the finest map ``S_2``; in training mode (deep
supervision) ``[S_2, S_3, S_4, S_g]`` are returned, as PraNet supervises all
four with its weighted IoU + BCE loss.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from medattn.models.base import SegmentationModel
from medattn.models.encoders import create_encoder
from medattn.models.registry import register_model


class BasicConv2d(nn.Sequential):
    """Convolution (no bias) + batch norm; PraNet applies ReLU outside where it wants one."""

    def __init__(self, cin: int, cout: int, kernel: int | tuple[int, int], padding: int | tuple[int, int] = 0,
                 dilation: int = 1) -> None:
        super().__init__(nn.Conv2d(cin, cout, kernel, padding=padding, dilation=dilation, bias=False),
                         nn.BatchNorm2d(cout))


class RFB(nn.Module):
    """Receptive field block: four branches of growing (dilated, separable) receptive fields."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        def branch(k: int) -> nn.Sequential:
            return nn.Sequential(BasicConv2d(cin, cout, 1),
                                 BasicConv2d(cout, cout, (1, k), padding=(0, k // 2)),
                                 BasicConv2d(cout, cout, (k, 1), padding=(k // 2, 0)),
                                 BasicConv2d(cout, cout, 3, padding=k, dilation=k))

        self.branch0 = BasicConv2d(cin, cout, 1)
        self.branch1, self.branch2, self.branch3 = branch(3), branch(5), branch(7)
        self.conv_cat = BasicConv2d(4 * cout, cout, 3, padding=1)
        self.conv_res = BasicConv2d(cin, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cat = torch.cat([self.branch0(x), self.branch1(x), self.branch2(x), self.branch3(x)], dim=1)
        return F.relu(self.conv_cat(cat) + self.conv_res(x))


def _up(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, size=like.shape[-2:], mode="bilinear", align_corners=True)


class PartialDecoder(nn.Module):
    """Aggregates the three deepest RFB features (1/32, 1/16, 1/8) into the global map S_g."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv_up1 = BasicConv2d(c, c, 3, padding=1)
        self.conv_up2 = BasicConv2d(c, c, 3, padding=1)
        self.conv_up3 = BasicConv2d(c, c, 3, padding=1)
        self.conv_up4 = BasicConv2d(c, c, 3, padding=1)
        self.conv_up5 = BasicConv2d(2 * c, 2 * c, 3, padding=1)
        self.conv_concat2 = BasicConv2d(2 * c, 2 * c, 3, padding=1)
        self.conv_concat3 = BasicConv2d(3 * c, 3 * c, 3, padding=1)
        self.conv4 = BasicConv2d(3 * c, 3 * c, 3, padding=1)
        self.conv5 = nn.Conv2d(3 * c, 1, 1)

    def forward(self, x5: torch.Tensor, x4: torch.Tensor, x3: torch.Tensor) -> torch.Tensor:
        # element-wise products keep only what coarser levels agree on (CPD's aggregation)
        x4_1 = self.conv_up1(_up(x5, x4)) * x4
        x3_1 = self.conv_up2(_up(x5, x3)) * self.conv_up3(_up(x4, x3)) * x3
        x4_2 = self.conv_concat2(torch.cat([x4_1, self.conv_up4(_up(x5, x4))], dim=1))
        x3_2 = self.conv_concat3(torch.cat([x3_1, self.conv_up5(_up(x4_2, x3))], dim=1))
        return self.conv5(self.conv4(x3_2))


class ReverseAttention(nn.Module):
    """Side feature weighted by ``1 - sigmoid(S)`` (paper Eq. 2), then convs predicting a residual map."""

    def __init__(self, cin: int, width: int, kernel: int, depth: int) -> None:
        super().__init__()
        layers: list[nn.Module] = [BasicConv2d(cin, width, 1)]
        layers += [BasicConv2d(width, width, kernel, padding=kernel // 2) for _ in range(depth)]
        self.convs = nn.ModuleList(layers)
        self.out = nn.Conv2d(width, 1, 3 if kernel == 3 else 1, padding=1 if kernel == 3 else 0)

    def forward(self, feat: torch.Tensor, prev: torch.Tensor) -> torch.Tensor:
        x = feat * (1 - torch.sigmoid(prev))
        for conv in self.convs:
            x = F.relu(conv(x))
        return self.out(x) + prev


class PraNet(SegmentationModel):
    """PraNet on a zoo encoder (uses its features at strides 8, 16, 32).

    Args:
        encoder: encoder name (``medattn.models.encoders``).
        encoder_weights: local ImageNet weights file for the encoder.
        encoder_options: extra options of :func:`create_encoder`, e.g. ``{"normalize": "imagenet"}``
            with the ImageNet MobileNetV2 file (the BSANet comparison's shared encoder).
        rfb_channels: channels of the RFB outputs / partial decoder (32 in the paper).
        deep_supervision: return ``[S_2, S_3, S_4, S_g]`` in training mode.
    """

    def __init__(self, in_channels: int = 3, num_classes: int = 1, encoder: str = "resnet50",
                 encoder_weights: str | None = None, rfb_channels: int = 32, deep_supervision: bool = True,
                 encoder_options: dict | None = None) -> None:
        super().__init__(in_channels, num_classes, stride=32, deep_supervision=deep_supervision)
        self.encoder = create_encoder(encoder, in_channels=in_channels, pretrained=encoder_weights,
                                      **(encoder_options or {}))
        if self.encoder.reductions[-3:] != [8, 16, 32]:
            raise ValueError(f"PraNet needs encoder features at strides 8, 16, 32; {encoder} has "
                             f"{self.encoder.reductions}")
        c2, c3, c4 = self.encoder.out_channels[-3:]
        self.rfb2, self.rfb3, self.rfb4 = RFB(c2, rfb_channels), RFB(c3, rfb_channels), RFB(c4, rfb_channels)
        self.agg = PartialDecoder(rfb_channels)
        self.ra4 = ReverseAttention(c4, 256, 5, 3)
        self.ra3 = ReverseAttention(c3, 64, 3, 2)
        self.ra2 = ReverseAttention(c2, 64, 3, 2)
        # multi-class: a 1x1 head per map on top of the one-channel reverse-attention path
        self.heads = nn.ModuleList(nn.Conv2d(1, num_classes, 1) for _ in range(4)) if num_classes > 1 else None

    def forward_logits(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
        x2, x3, x4 = self.encoder(x)[-3:]
        s_g = self.agg(self.rfb4(x4), self.rfb3(x3), self.rfb2(x2))           # 1/8
        s4 = self.ra4(x4, F.interpolate(s_g, size=x4.shape[-2:], mode="bilinear", align_corners=False))
        s3 = self.ra3(x3, F.interpolate(s4, size=x3.shape[-2:], mode="bilinear", align_corners=False))
        s2 = self.ra2(x2, F.interpolate(s3, size=x2.shape[-2:], mode="bilinear", align_corners=False))
        maps = [s2, s3, s4, s_g]
        if self.heads is not None:
            maps = [h(m) for h, m in zip(self.heads, maps, strict=True)]
        if self.deep_supervision and self.training:
            return maps[0], maps[1:]
        return maps[0]


@register_model("pranet", input_size=(352, 352),
                paper="Fan et al., PraNet: Parallel Reverse Attention Network for Polyp Segmentation, MICCAI 2020")
def pranet(**kwargs) -> PraNet:
    """PraNet-style reverse attention (RFB, partial decoder, 3 RA modules) on a ResNet-50 encoder."""
    return PraNet(**kwargs)
