"""Weakly-supervised lesion classifier: a zoo encoder, global average pooling, a linear head.

The network CAWE reads (seed paper 002, sec. 3.1): image-level labels only
(lesion present / absent, multi-label sigmoid outputs), global average pooling
after the last convolutional stage so that stage keeps the lesion's spatial
layout. :attr:`LesionClassifier.cam_layer` is that stage, the default layer
:class:`medattn.enhance.CAWE` reads.

Backbones: ``resnet50`` (the paper's), ``resnet34``, ``resnet18`` (torchvision's
layout; ``width`` scales every stage, e.g. ``width=0.25`` gives a 0.7M-parameter
network that trains on a CPU) and ``mobilenet_v2`` (with ``pretrained`` = the
ImageNet file in ``../shared/data/pretrained``). Inputs are in [0, 1]; the
ImageNet normalisation (or its gray mean) is applied inside.
"""

from __future__ import annotations

import torch
from torch import nn

from medattn.models.encoders import create_encoder
from medattn.models.encoders.base import Encoder
from medattn.models.encoders.resnet import BasicBlock, ResNetEncoder
from medattn.models.registry import register_model

BACKBONES = ("resnet18", "resnet34", "resnet50", "mobilenet_v2")
_MEAN, _STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def _build_backbone(backbone: str, in_channels: int, width: float, pretrained: str | None) -> Encoder:
    if backbone == "resnet18":
        planes = [max(8, round(p * width)) for p in (64, 128, 256, 512)]
        enc: Encoder = ResNetEncoder(BasicBlock, [2, 2, 2, 2], in_channels, stem_channels=planes[0], planes=planes)
        if pretrained:
            enc.load_pretrained(pretrained)
        return enc
    if backbone not in BACKBONES:
        raise ValueError(f"unknown backbone {backbone!r}; choose one of {', '.join(BACKBONES)}")
    if width != 1.0:
        raise ValueError(f"width applies to resnet18 only, not {backbone!r}")
    return create_encoder(backbone, in_channels=in_channels, pretrained=pretrained)


class LesionClassifier(nn.Module):
    """Encoder -> last stage -> global average pooling -> dropout -> linear (one logit per class).

    Args:
        backbone: one of :data:`BACKBONES`.
        in_channels: 1 (grayscale, the default: radiology images) or 3.
        num_classes: independent (sigmoid) classes; 1 = lesion present.
        width: channel multiplier of ``resnet18``.
        pretrained: local weights file for the encoder (torchvision/timm layout).
        dropout: before the linear head.
    """

    def __init__(self, backbone: str = "resnet18", in_channels: int = 1, num_classes: int = 1, width: float = 1.0,
                 pretrained: str | None = None, dropout: float = 0.2) -> None:
        super().__init__()
        if in_channels not in (1, 3):
            raise ValueError(f"in_channels must be 1 or 3, got {in_channels}")
        self.backbone, self.in_channels, self.num_classes = backbone, in_channels, num_classes
        self.encoder = _build_backbone(backbone, in_channels, width, pretrained)
        mean = torch.tensor(_MEAN if in_channels == 3 else (sum(_MEAN) / 3,)).view(1, -1, 1, 1)
        std = torch.tensor(_STD if in_channels == 3 else (sum(_STD) / 3,)).view(1, -1, 1, 1)
        self.register_buffer("mean", mean, persistent=False)
        self.register_buffer("std", std, persistent=False)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(self.encoder.out_channels[-1], num_classes)

    @property
    def cam_layer(self) -> nn.Module:
        """The last convolutional stage (ResNet ``layer4``, MobileNetV2's 1x1 head conv)."""
        enc = self.encoder
        return enc.layer4 if hasattr(enc, "layer4") else enc.features[-1]

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The last-stage feature maps ``F`` (B, K, h, w) of eq. 1."""
        return self.encoder((x - self.mean) / self.std)[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(self.pool(self.features(x)).flatten(1)))

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Class probabilities (sigmoid), (B, num_classes)."""
        return torch.sigmoid(self.forward(x))


@register_model("lesion_classifier", task="classification", input_size=(224, 224),
                paper="Medical image improvement for lesion detection based on class-aware attention (seed 002)",
                default_options={"backbone": "resnet18", "in_channels": 1, "num_classes": 1, "width": 1.0})
def lesion_classifier(backbone: str = "resnet18", in_channels: int = 1, num_classes: int = 1, width: float = 1.0,
                      pretrained: str | None = None, dropout: float = 0.2) -> LesionClassifier:
    """Image-level lesion classifier whose last stage CAWE reads (ResNet-50 in the paper)."""
    return LesionClassifier(backbone, in_channels, num_classes, width, pretrained, dropout)
