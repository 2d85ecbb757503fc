"""HLF-Net: high- and low-level feature enhancement for medical image segmentation.

Wang, Wang, Xu, Lei, Zhang, "High- and Low-Level Feature Enhancement for
Medical Image Segmentation", MLMI 2019 (``shared/seeds/004_*.txt``).

An encoder of stacked **LFE** blocks (sec. 2.2) and a decoder of **HFE**
blocks (sec. 2.1) on a 4-down / 4-up U-shaped network whose convolution
modules are 3x3 conv + GroupNorm + ReLU (sec. 2.3). The paper numbers no
equations; docstrings quote its formulas:

* HFE: ``Y = (X, U)``; channel recalibration ``z_t = Avgpool(y_t)``,
  ``z~ = sigmoid(conv1x1(ReLU(conv1x1(z))))``, ``Y~_c = (1 + z~) * Y``; spatial
  recalibration ``s~ = sigmoid(conv1x1(Y))``, ``Y~_s = (1 + s~) * Y``; then
  ``conv3x3(concat(Y~_c, Y~_s))`` fuses them and reduces the channels.
* LFE: ``X~ = (1 + sigmoid(s')) * F_tr(X)`` where ``F_tr`` is the trunk branch
  and ``s'`` the 1x1-conv projection of a mini encoder-decoder (two
  down-samplings, two up-samplings, skips) on the block input.

Ablations (Table 1): ``use_hfe=False`` replaces each HFE by the plain
``concat -> conv3x3`` skip fusion ("HLF-Net (only LFE)"), ``use_lfe=False``
drops the semantic branch so each encoder stage is the trunk alone
("HLF-Net (only HFE)"), both off give the plain GroupNorm U-Net the modules
are added to. Registered as ``hlfnet``, ``hlfnet_no_hfe``, ``hlfnet_no_lfe``,
``hlfnet_plain``. See docs/hlfnet.md for the parameter breakdown.

>>> from medattn.models import create
>>> net = create("hlfnet", in_channels=3, num_classes=1)
>>> net(torch.rand(1, 3, 96, 80)).shape
torch.Size([1, 1, 96, 80])
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from medattn.errors import ConfigError
from medattn.models.base import SegmentationModel
from medattn.models.encoders import create_encoder, register_encoder
from medattn.models.encoders.base import Encoder
from medattn.models.registry import register_model

PAPER = "Wang et al., High- and Low-Level Feature Enhancement for Medical Image Segmentation, MLMI 2019"


def group_norm(channels: int, groups: int = 8) -> nn.GroupNorm:
    """GroupNorm [Wu & He 2018] with the largest group count <= ``groups`` dividing ``channels``."""
    g = max(d for d in range(1, min(groups, channels) + 1) if channels % d == 0)
    return nn.GroupNorm(g, channels)


class ConvGNReLU(nn.Sequential):
    """The paper's convolution module: 3x3 conv, group normalisation, ReLU (sec. 2.3)."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int = 3, groups: int = 8) -> None:
        super().__init__(
            nn.Conv2d(in_ch, out_ch, kernel_size, padding=kernel_size // 2, bias=False),
            group_norm(out_ch, groups),
            nn.ReLU(inplace=True),
        )


class ResidualBlock(nn.Module):
    """Two conv modules with an identity (or 1x1 conv + GN projection) shortcut [He et al. 2016].

    ``ReLU(GN(conv3x3(ConvGNReLU(x))) + shortcut(x))``: the block the paper's Res-Unet-28 puts in
    place of each pair of conv modules (see :func:`conv_block`).
    """

    def __init__(self, in_ch: int, out_ch: int, groups: int = 8) -> None:
        super().__init__()
        self.conv1 = ConvGNReLU(in_ch, out_ch, groups=groups)
        self.conv2 = nn.Sequential(nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=False), group_norm(out_ch, groups))
        self.shortcut = (nn.Identity() if in_ch == out_ch else
                         nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, bias=False), group_norm(out_ch, groups)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.conv2(self.conv1(x)) + self.shortcut(x))


BLOCKS = ("plain", "residual")


def conv_block(in_ch: int, out_ch: int, block: str = "plain", groups: int = 8) -> nn.Module:
    """The two-conv-module unit of every encoder and decoder stage: ``plain`` (U-Net) or ``residual``."""
    if block == "plain":
        return nn.Sequential(ConvGNReLU(in_ch, out_ch, groups=groups), ConvGNReLU(out_ch, out_ch, groups=groups))
    if block == "residual":
        return ResidualBlock(in_ch, out_ch, groups)
    raise ConfigError(f"block {block!r}: use one of {', '.join(BLOCKS)}")


def _resize_to(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, size=ref.shape[-2:], mode="bilinear", align_corners=False)


class SemanticBranch(nn.Module):
    """LFE's semantic embedded branch: a mini encoder-decoder giving the map ``s'`` (sec. 2.2).

    Two down-samplings (max-pool + conv module, to H/2 then H/4), two
    up-samplings (bilinear) with an additive skip at H/2 followed by a conv
    module, and a 1x1 conv to one channel at full resolution. Returns the
    logits ``s'`` of shape ``(B, 1, H, W)``; :class:`LFE` applies the sigmoid.
    Three conv modules keep the branch "lighter" than the trunk path it guides
    (the paper's word); pooling uses ``ceil_mode`` and up-sampling goes to the
    skip's size, so odd sizes work.
    """

    def __init__(self, in_ch: int, width: int, groups: int = 8) -> None:
        super().__init__()
        self.down1 = ConvGNReLU(in_ch, width, groups=groups)
        self.down2 = ConvGNReLU(width, width, groups=groups)
        self.up1 = ConvGNReLU(width, width, groups=groups)
        self.project = nn.Conv2d(width, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d1 = self.down1(F.max_pool2d(x, 2, ceil_mode=True))      # H/2
        d2 = self.down2(F.max_pool2d(d1, 2, ceil_mode=True))     # H/4: widest receptive field
        u1 = self.up1(_resize_to(d2, d1) + d1)                   # skip at H/2
        return self.project(_resize_to(u1, x))                   # s' at H


class LFE(nn.Module):
    """Low-level feature enhancement module: ``X~ = (1 + sigmoid(s')) * F_tr(X)`` (sec. 2.2, Fig. 2).

    The trunk ``F_tr`` is two conv modules (a :class:`ResidualBlock` with ``block="residual"``);
    the residual ``1 +`` keeps the
    trunk response from shrinking when blocks are stacked. With
    ``use_semantic=False`` the block is the trunk alone (ablation).
    """

    def __init__(self, in_ch: int, out_ch: int, use_semantic: bool = True, groups: int = 8,
                 block: str = "plain") -> None:
        super().__init__()
        self.trunk = conv_block(in_ch, out_ch, block, groups)
        self.semantic = SemanticBranch(in_ch, out_ch, groups) if use_semantic else None
        self.last_map: torch.Tensor | None = None  # sigma(s'), kept for attention-map display

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.trunk(x)
        if self.semantic is None:
            return t
        m = torch.sigmoid(self.semantic(x))
        self.last_map = m.detach()
        return (1 + m) * t


class HFE(nn.Module):
    """High-level feature enhancement module (sec. 2.1, Fig. 1).

    For ``Y = concat(X, U)`` with ``2c`` channels (``X`` the low-level skip, ``U``
    the up-sampled high-level feature):
    ``Y~_c = (1 + sigmoid(W_2 ReLU(W_1 Avgpool(Y)))) * Y`` (channel),
    ``Y~_s = (1 + sigmoid(W_s Y)) * Y`` (spatial), output
    ``conv3x3(concat(Y~_c, Y~_s))`` (+ GN, ReLU): ``4c`` channels reduced to ``2c``.

    Args:
        channels: channels of ``Y`` (2c), also the output channels.
        reduction: hidden width ``channels // reduction`` of the channel branch; the
            paper names two 1x1 convs and no reduction, so 1.
    """

    def __init__(self, channels: int, reduction: int = 1, groups: int = 8) -> None:
        super().__init__()
        hidden = max(1, channels // reduction)
        self.channel = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(channels, hidden, 1),
                                     nn.ReLU(inplace=True), nn.Conv2d(hidden, channels, 1))
        self.spatial = nn.Conv2d(channels, 1, 1)
        self.fuse = ConvGNReLU(2 * channels, channels, groups=groups)
        self.last_map: torch.Tensor | None = None  # s~, kept for attention-map display

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        z = torch.sigmoid(self.channel(y))
        s = torch.sigmoid(self.spatial(y))
        self.last_map = s.detach()
        return self.fuse(torch.cat([(1 + z) * y, (1 + s) * y], dim=1))


class HLFEncoder(Encoder):
    """The LFE down path of HLF-Net: five stages, max-pool between them.

    ``forward`` returns the five stage outputs, finest first, at strides
    1, 2, 4, 8, 16. It is an :class:`Encoder`, so its weights can be
    pretrained on their own (MAE) and loaded through :meth:`load_pretrained`
    (keys as in ``HLFNet.encoder.state_dict()``; a leading ``encoder.`` is stripped).
    """

    def __init__(self, in_channels: int = 3, widths: Sequence[int] = (16, 32, 64, 128, 256),
                 use_lfe: bool = True, groups: int = 8, block: str = "plain") -> None:
        super().__init__()
        self.out_channels = list(widths)
        self.reductions = [2 ** i for i in range(len(widths))]
        chans = [in_channels, *widths]
        self.stages = nn.ModuleList(
            LFE(chans[i], chans[i + 1], use_semantic=use_lfe, groups=groups, block=block)
            for i in range(len(widths))
        )

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for i, stage in enumerate(self.stages):
            if i:
                x = F.max_pool2d(x, 2)
            x = stage(x)
            feats.append(x)
        return feats

    def remap_state_dict(self, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        sd = super().remap_state_dict(state_dict)
        return {k.removeprefix("encoder."): v for k, v in sd.items()}


class DecoderStage(nn.Module):
    """One up step: transposed conv 2x2, concat with the skip, HFE (or nothing), two conv modules.

    HFE takes the place of the plain skip concatenation (sec. 2.3: the modules
    replace "skip connection operations"), so ``use_hfe=False`` is exactly the
    U-Net decoder stage.
    """

    def __init__(self, in_ch: int, skip_ch: int, out_ch: int, use_hfe: bool = True,
                 reduction: int = 1, groups: int = 8, block: str = "plain") -> None:
        super().__init__()
        self.up = nn.ConvTranspose2d(in_ch, skip_ch, 2, stride=2)
        cat = 2 * skip_ch
        self.hfe = HFE(cat, reduction, groups) if use_hfe else nn.Identity()
        self.conv = conv_block(cat, out_ch, block, groups)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        u = self.up(x)
        if u.shape[-2:] != skip.shape[-2:]:
            u = _resize_to(u, skip)
        return self.conv(self.hfe(torch.cat([skip, u], dim=1)))


class HLFNet(SegmentationModel):
    """HLF-Net (Fig. 3): LFE encoder, HFE decoder, 4 down / 4 up, GroupNorm.

    Args:
        in_channels: 1 or 3 (the paper feeds RGB + gray = 4 for ISIC; any count works).
        num_classes: output logits (1 = binary, sigmoid).
        base_width: channels of the first stage; stage ``i`` has ``base_width * 2**i``.
            16 gives 5.6M parameters (the paper: 5.5 x 10^6; see docs/hlfnet.md).
        use_hfe: HFE skip fusion in the decoder (False: concat + conv, "only LFE" row).
        use_lfe: LFE semantic branch in the encoder (False: trunk only, "only HFE" row).
        hfe_reduction: hidden width divisor of the HFE channel branch.
        groups: GroupNorm groups (at most).
        deep_supervision: in training, also return 1x1-conv logits of the coarser
            decoder stages (not in the paper; off by default).
        encoder: ``"lfe"`` (the paper's) or the name of any zoo encoder (``resnet34``,
            ``mobilenet_v2``, ...) to put the HFE decoder on it; the decoder then takes
            the encoder's widths and the logits are up-sampled from its finest stride.
        encoder_options: extra options of a zoo encoder's builder, e.g.
            ``{"normalize": "imagenet"}`` to standardise the input as its ImageNet weights expect.
        pretrained_encoder: local state-dict file for :attr:`encoder` (MAE-pretrained
            LFE weights, or ImageNet weights of a zoo encoder).
        block: ``"plain"`` (two conv modules per stage) or ``"residual"``
            (:class:`ResidualBlock`; with both modules off and ``base_width=28`` this is
            the paper's Res-Unet-28).
    """

    def __init__(self, in_channels: int = 3, num_classes: int = 1, base_width: int = 16,
                 use_hfe: bool = True, use_lfe: bool = True, hfe_reduction: int = 1, groups: int = 8,
                 deep_supervision: bool = False, encoder: str = "lfe",
                 encoder_options: dict[str, Any] | None = None,
                 pretrained_encoder: str | os.PathLike[str] | None = None, block: str = "plain") -> None:
        if encoder == "lfe":
            if encoder_options:
                raise ConfigError(f"encoder_options {sorted(encoder_options)}: only a zoo encoder takes them, "
                                  "not the LFE encoder")
            enc: Encoder = HLFEncoder(in_channels, [base_width * 2 ** i for i in range(5)],
                                      use_lfe=use_lfe, groups=groups, block=block)
            if pretrained_encoder:
                enc.load_pretrained(pretrained_encoder)
        else:
            if not use_lfe:
                raise ConfigError("use_lfe=False switches off the LFE encoder's semantic branch; "
                                  f"it has no meaning with encoder={encoder!r}")
            enc = create_encoder(encoder, in_channels=in_channels,
                                 pretrained=os.fspath(pretrained_encoder) if pretrained_encoder else None,
                                 **(encoder_options or {}))
        super().__init__(in_channels, num_classes, stride=enc.stride, deep_supervision=deep_supervision)
        self.use_hfe, self.use_lfe = use_hfe, use_lfe
        self.encoder = enc
        widths = list(enc.out_channels)
        n = len(widths) - 1
        self.decoder = nn.ModuleList(
            DecoderStage(widths[i + 1], widths[i], widths[i], use_hfe, hfe_reduction, groups, block)
            for i in reversed(range(n))
        )
        self.head = nn.Conv2d(widths[0], num_classes, 1)
        self.aux_heads = (nn.ModuleList(nn.Conv2d(widths[i], num_classes, 1) for i in reversed(range(1, n)))
                          if deep_supervision else None)

    @property
    def encoder_stages(self) -> nn.ModuleList:
        """The LFE stages of the encoder, finest first (for pretraining and freezing)."""
        if not isinstance(self.encoder, HLFEncoder):
            raise AttributeError(f"encoder_stages: {type(self.encoder).__name__} is not the LFE encoder")
        return self.encoder.stages

    def forward_logits(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
        feats = self.encoder(x)
        y = feats[-1]
        aux = []
        for stage, skip in zip(self.decoder, reversed(feats[:-1]), strict=True):
            y = stage(y, skip)
            aux.append(y)
        main = self.head(y)
        if self.aux_heads is not None and self.training:
            return main, [h(a) for h, a in zip(self.aux_heads, aux[:-1], strict=True)]
        return main

    def attention_maps(self) -> dict[str, torch.Tensor]:
        """The last forward's LFE semantic maps and HFE spatial coefficients (Fig. 4), by module name."""
        return {name: m.last_map for name, m in self.named_modules()
                if isinstance(m, (LFE, HFE)) and m.last_map is not None}


@register_encoder("hlf_lfe")
def hlf_lfe(in_channels: int = 3, base_width: int = 16, use_lfe: bool = True, **kwargs) -> HLFEncoder:
    """HLF-Net's LFE encoder on its own (strides 1..16)."""
    return HLFEncoder(in_channels, [base_width * 2 ** i for i in range(5)], use_lfe=use_lfe, **kwargs)


_REG = dict(input_size=(192, 256), paper=PAPER)


@register_model("hlfnet", paper_params=5_500_000, **_REG)
def hlfnet(**kwargs) -> HLFNet:
    """HLF-Net: LFE encoder + HFE decoder (5.5M parameters)."""
    return HLFNet(**kwargs)


@register_model("hlfnet_no_hfe", paper_params=3_800_000, default_options={"use_hfe": False}, **_REG)
def hlfnet_no_hfe(**kwargs) -> HLFNet:
    """HLF-Net ablation "only LFE": plain concat + conv skips in the decoder."""
    return HLFNet(**kwargs)


@register_model("hlfnet_no_lfe", paper_params=3_600_000, default_options={"use_lfe": False}, **_REG)
def hlfnet_no_lfe(**kwargs) -> HLFNet:
    """HLF-Net ablation "only HFE": encoder stages without the LFE semantic branch."""
    return HLFNet(**kwargs)


@register_model("hlfnet_plain", default_options={"use_hfe": False, "use_lfe": False}, **_REG)
def hlfnet_plain(**kwargs) -> HLFNet:
    """HLF-Net with both modules off: the GroupNorm U-Net the ablation starts from."""
    return HLFNet(**kwargs)


@register_model("unet28", paper_params=5_900_000,
                default_options={"use_hfe": False, "use_lfe": False, "base_width": 28}, **_REG)
def unet28(**kwargs) -> HLFNet:
    """The paper's Unet-28 baseline: the plain GroupNorm U-Net of HLF-Net at 28 base channels."""
    return HLFNet(**kwargs)


@register_model("res_unet28", paper_params=6_200_000,
                default_options={"use_hfe": False, "use_lfe": False, "base_width": 28, "block": "residual"},
                **_REG)
def res_unet28(**kwargs) -> HLFNet:
    """The paper's Res-Unet-28 baseline: Unet-28 with each pair of conv modules a residual block."""
    return HLFNet(**kwargs)
