"""MobileNetV2 encoder in torchvision's ``features.N`` layout.

The module tree is torchvision's ``mobilenet_v2().features`` (``features.0``
stem, ``features.1..17`` inverted residuals, ``features.18`` the 1x1 head
conv), so the real ImageNet weights in
``../shared/data/pretrained/mobilenet_v2_imagenet.pth`` load key for key
(314 tensors; ``classifier.*`` is dropped). timm's ``mobilenetv2_100``
layout (``conv_stem``, ``blocks.i.j.conv_pw``, ``conv_head``) is mapped.

Features (finest first)::

    reductions   = [2, 4, 8, 16, 32]
    out_channels = [16, 24, 32, 96, 1280]

**Folded batch norm.** That file comes from a quantized release: every
BatchNorm holds weight 1, mean 0, var 1 - eps and the folded bias. Training
such layers in train mode would replace those statistics with batch ones and
break the pretrained function, so by default (``freeze_bn=None``) batch norm
is frozen (eval mode, no gradients) as soon as pretrained weights are loaded;
pass ``freeze_bn=False`` to train it anyway, ``True`` to freeze always.

Reference: Sandler et al., CVPR 2018.
"""

from __future__ import annotations

import os
import re

import torch
from torch import nn

from medattn.errors import ConfigError
from medattn.models.encoders import register_encoder
from medattn.models.encoders.base import Encoder


def _make_divisible(v: float, divisor: int = 8) -> int:
    new = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * v else new


class ConvBNReLU6(nn.Sequential):
    """Conv, BatchNorm, ReLU6: torchvision's ``Conv2dNormActivation`` (children 0, 1, 2)."""

    def __init__(self, cin: int, cout: int, k: int = 3, stride: int = 1, groups: int = 1) -> None:
        super().__init__(nn.Conv2d(cin, cout, k, stride, (k - 1) // 2, groups=groups, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU6(inplace=True))


class InvertedResidual(nn.Module):
    """Expand (1x1), depthwise 3x3, project (1x1, linear); residual when shapes agree."""

    def __init__(self, cin: int, cout: int, stride: int, expand_ratio: int) -> None:
        super().__init__()
        hidden = round(cin * expand_ratio)
        self.use_res_connect = stride == 1 and cin == cout
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(ConvBNReLU6(cin, hidden, 1))
        layers += [ConvBNReLU6(hidden, hidden, 3, stride, groups=hidden),
                   nn.Conv2d(hidden, cout, 1, bias=False), nn.BatchNorm2d(cout)]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


# (expand ratio t, channels c, repeats n, first stride s), table 2 of the paper
_SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
             (6, 320, 1, 1))


class MobileNetV2Encoder(Encoder):
    """MobileNetV2 feature extractor (torchvision layout).

    Args:
        in_channels: image channels (1-channel models sum the pretrained stem over RGB).
        width_mult: channel multiplier (1.0 for the ImageNet weights).
        freeze_bn: ``None`` freezes batch norm once pretrained weights are
            loaded (see the module docstring), ``True`` always, ``False`` never.
    """

    # indices in `features` whose outputs are the five feature maps
    _TAPS = (1, 3, 6, 13, 18)

    def __init__(self, in_channels: int = 3, width_mult: float = 1.0, freeze_bn: bool | None = None) -> None:
        super().__init__()
        cin = _make_divisible(32 * width_mult)
        last = _make_divisible(1280 * max(1.0, width_mult))
        layers: list[nn.Module] = [ConvBNReLU6(in_channels, cin, 3, 2)]
        for t, c, n, s in _SETTINGS:
            cout = _make_divisible(c * width_mult)
            for i in range(n):
                layers.append(InvertedResidual(cin, cout, s if i == 0 else 1, t))
                cin = cout
        layers.append(ConvBNReLU6(cin, last, 1))
        self.features = nn.Sequential(*layers)
        self.out_channels = [self._out_of(self.features[i]) for i in self._TAPS]
        self.reductions = [2, 4, 8, 16, 32]
        self.freeze_bn = freeze_bn
        self._bn_frozen = False
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
        if freeze_bn:
            self.set_bn_frozen(True)

    @staticmethod
    def _out_of(block: nn.Module) -> int:
        return [m for m in block.modules() if isinstance(m, nn.BatchNorm2d)][-1].num_features

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in self._TAPS:
                feats.append(x)
        return feats

    def truncate(self, max_stride: int) -> None:
        """Drop the layers after the last feature at stride <= ``max_stride`` (load weights first).

        EFEN's MobileNetV2 variant stops at stride 16: the stride-32 stages (1.5M of the
        2.2M parameters) would otherwise sit in the model without ever being used.
        """
        keep = [i for i, r in enumerate(self.reductions) if r <= max_stride]
        if not keep:
            raise ConfigError(f"mobilenet_v2: no feature at stride <= {max_stride} (strides {self.reductions})")
        last = self._TAPS[keep[-1]]
        self.features = self.features[: last + 1]
        self._TAPS = self._TAPS[: len(keep)]
        self.out_channels = self.out_channels[: len(keep)]
        self.reductions = self.reductions[: len(keep)]

    # -- folded batch norm ----------------------------------------------
    def set_bn_frozen(self, frozen: bool = True) -> None:
        """Keep every BatchNorm in eval mode with fixed weight and bias (or release them)."""
        self._bn_frozen = frozen
        for m in self.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.requires_grad_(not frozen)
                m.bias.requires_grad_(not frozen)
        self.train(self.training)

    def train(self, mode: bool = True) -> MobileNetV2Encoder:
        super().train(mode)
        if self._bn_frozen:
            for m in self.modules():
                if isinstance(m, nn.BatchNorm2d):
                    m.eval()
        return self

    def load_pretrained(self, path: str | os.PathLike[str], strict: bool = True) -> None:
        super().load_pretrained(path, strict=strict)
        if self.freeze_bn is None or self.freeze_bn:
            self.set_bn_frozen(True)

    # -- foreign layouts ------------------------------------------------
    def remap_state_dict(self, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Map timm's ``mobilenetv2_100`` names onto torchvision's; drop classifiers."""
        sd = super().remap_state_dict(state_dict)
        if not any(k.startswith(("conv_stem.", "blocks.")) for k in sd):
            return sd
        # timm block (stage i, block j) -> torchvision features index
        index, n = {}, 1
        for i, (_, _, reps, _) in enumerate(_SETTINGS):
            for j in range(reps):
                index[(i, j)] = n
                n += 1
        head = n
        out = {}
        for k, v in sd.items():
            m = re.match(r"blocks\.(\d+)\.(\d+)\.(\w+)\.(.+)", k)
            if m:
                i, j, part, rest = int(m[1]), int(m[2]), m[3], m[4]
                f = index[(i, j)]
                if i == 0:  # depthwise-separable block: dw conv, bn1, pw conv, bn2
                    names = {"conv_dw": "conv.0.0", "bn1": "conv.0.1", "conv_pw": "conv.1", "bn2": "conv.2"}
                else:
                    names = {"conv_pw": "conv.0.0", "bn1": "conv.0.1", "conv_dw": "conv.1.0", "bn2": "conv.1.1",
                             "conv_pwl": "conv.2", "bn3": "conv.3"}
                out[f"features.{f}.{names.get(part, part)}.{rest}"] = v
                continue
            for src, dst in (("conv_stem.", "features.0.0."), ("bn1.", "features.0.1."),
                             ("conv_head.", f"features.{head}.0."), ("bn2.", f"features.{head}.1.")):
                if k.startswith(src):
                    out[dst + k[len(src):]] = v
                    break
            else:
                out[k] = v
        return out


@register_encoder("mobilenet_v2")
def mobilenet_v2(in_channels: int = 3, width_mult: float = 1.0, freeze_bn: bool | None = None) -> MobileNetV2Encoder:
    """MobileNetV2: 2.22M parameters (torchvision's 3,504,872 minus the classifier)."""
    return MobileNetV2Encoder(in_channels, width_mult, freeze_bn)
