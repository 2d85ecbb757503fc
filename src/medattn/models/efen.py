"""EFEN: enhanced feature extraction network for medical image segmentation.

Paper 001 (``shared/seeds/001_*.txt``): a U-Net on a VGG-19 encoder (E1, D1),
followed by a *feature re-extraction* encoder-decoder (E2, D2) whose encoder
stages are fused with the first decoder's stages (eq. 3), and **improved skip
connections** everywhere (eqs. 5-9): sinusoidal positional encoding on both
inputs, cross-attention with queries and keys from the decoder feature and
values from the max-pooled encoder feature, gating of the encoder feature,
concatenation. Equations as implemented:

* (1) ``F^E1_i = Phi_E1(F^E1_{i-1})``: the VGG-19 stages before each max-pool,
  strides 1, 2, 4, 8, 16 (64, 128, 256, 512, 512 channels);
* (2) ``F^D1_j = Psi(concat(Phi_D1(F^D1_{j-1}), R(F^E1_i, F^D1_{j-1})))`` with
  ``Phi`` a 2x2 transposed conv and ``Psi`` = conv3x3, conv3x3, conv1x1;
* (3) ``F^E2_k = op_k(concat(Phi_E2(F^E2_{k-1}), F^D1_j))``, ``Phi_E2`` = max-pool +
  two conv3x3, ``op_k`` = conv3x3, conv3x3, conv1x1; ``F^E2_0`` is computed from
  ``concat(I, D1 output)`` (the U-Net's last 1x1 conv discarded);
* (4) ``F^D2_l`` as (2), with skips from E1 (not E2), then a 1x1 head;
* (5) ``R(F_E', F_D') = concat(F_E' * op2(AV), op3(F_D'))``;
* (6)-(7) ``F' = F + P(F)``, ``P`` sinusoidal (:mod:`medattn.models.blocks.positional`);
* (8) ``A = softmax(Q K^T / d_k)`` with ``Q = F_D' W_Q``, ``K = F_D' W_K`` and
  ``d_k`` the channel number of ``V``: the paper divides by ``d_k``, not
  ``sqrt(d_k)`` (``attn_scale="sqrt"`` switches to the Transformer's scaling);
* (9) ``V = op1(F_E') W_V``, ``op1`` = max-pool, conv1x1, BN, ReLU (halves the size,
  so V sits on F_D's grid).

Attention over all positions at the first skip would be an ``N x N`` matrix
with ``N = H/2 * W/2`` (27,648 tokens at 384x288: 3 GB per image), so Q, K
(average-pooled) and V (max-pooled) are further pooled until the token grid
has stride ``attn_stride`` (8 by default) in the input image; ``op2``'s
up-sampling then returns the gate to the skip's full resolution. Only the two
shallowest skips are affected by default. See docs/efen.md.

Ablation switches (the rows of the paper's Table 1): ``reextract=False`` drops
E2 and D2 (the head sits on D1: a plain U-Net on the VGG-19 encoder),
``improved_skip=False`` replaces every ``R(F_E, F_D)`` by the encoder feature
itself (U-Net's concatenation skip). Registered as ``efen_unet`` (both off),
``efen_reextract`` ("U-Net + Process1") and ``efen`` (both on);
``efen_mobilenet_v2`` is EFEN on the ImageNet MobileNetV2 encoder with a
full-resolution stem (:class:`FullResolutionStem`) for the stride-1 skip.

>>> from medattn.models import create
>>> net = create("efen", in_channels=3, num_classes=1)       # doctest: +SKIP
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from medattn.errors import ConfigError
from medattn.models.base import SegmentationModel
from medattn.models.blocks.positional import PositionalEncoding2d
from medattn.models.encoders import create_encoder
from medattn.models.encoders.base import Encoder
from medattn.models.registry import register_model

PAPER = "EFEN: enhanced feature extraction network for medical image segmentation (seed paper 001)"
SKIP_STRIDES = (1, 2, 4, 8, 16)


def conv_bn_relu(in_ch: int, out_ch: int, kernel_size: int = 3) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_ch, out_ch, kernel_size, padding=kernel_size // 2, bias=False),
                         nn.BatchNorm2d(out_ch), nn.ReLU(inplace=True))


def psi(in_ch: int, out_ch: int) -> nn.Sequential:
    """The paper's stage body (Psi_D, op_E2, op_D2): two conv3x3 and one conv1x1, each with BN + ReLU."""
    return nn.Sequential(conv_bn_relu(in_ch, out_ch), conv_bn_relu(out_ch, out_ch), conv_bn_relu(out_ch, out_ch, 1))


def _resize(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)


class CrossAttentionSkip(nn.Module):
    """The improved skip connection ``R(F_E', F_D')`` of eqs. 5-9.

    Args:
        enc_ch: channels of the encoder feature ``F_E`` (full skip resolution).
        dec_ch: channels of the decoder feature ``F_D`` (half the skip resolution).
        out_ch: channels of ``op3(F_D')``.
        attn_ch: channels of Q, K and V (``d_k``).
        pool: extra pooling of Q, K, V before the attention (1 = the paper's grid).
        pos_mode: ``"2d"`` or ``"1d"`` sinusoidal encoding (:class:`PositionalEncoding2d`).
        attn_scale: ``"dk"`` (eq. 8 as printed) or ``"sqrt"`` (``sqrt(d_k)``).

    Output channels: ``enc_ch + out_ch``.
    """

    def __init__(self, enc_ch: int, dec_ch: int, out_ch: int, attn_ch: int, pool: int = 1,
                 pos_mode: str = "2d", attn_scale: str = "dk") -> None:
        super().__init__()
        if attn_scale not in ("dk", "sqrt"):
            raise ConfigError(f"attn_scale must be 'dk' or 'sqrt', got {attn_scale!r}")
        self.pool = pool
        self.scale = 1.0 / (attn_ch if attn_scale == "dk" else attn_ch ** 0.5)
        self.pos = PositionalEncoding2d(pos_mode)
        self.op1 = nn.Sequential(nn.MaxPool2d(2), conv_bn_relu(enc_ch, attn_ch, 1))
        self.w_v = nn.Conv2d(attn_ch, attn_ch, 1, bias=False)
        self.w_q = nn.Conv2d(dec_ch, attn_ch, 1, bias=False)
        self.w_k = nn.Conv2d(dec_ch, attn_ch, 1, bias=False)
        self.op2 = conv_bn_relu(attn_ch, enc_ch, 1)           # then up-sampling (in forward)
        self.op3 = nn.Sequential(nn.Conv2d(dec_ch, out_ch, 3, padding=1), conv_bn_relu(out_ch, out_ch, 1))
        self.out_channels = enc_ch + out_ch
        self.last_gate: torch.Tensor | None = None  # channel mean of op2(AV), for attention-map display

    def attention(self, f_e: torch.Tensor, f_d: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(A, V)`` for already position-encoded inputs: A is ``(B, N, N)``, V is ``(B, C, h, w)``."""
        v = self.w_v(self.op1(f_e))
        q, k = self.w_q(f_d), self.w_k(f_d)
        if q.shape[-2:] != v.shape[-2:]:
            q, k = _resize(q, v.shape[-2:]), _resize(k, v.shape[-2:])
        if self.pool > 1:
            q, k = F.avg_pool2d(q, self.pool, ceil_mode=True), F.avg_pool2d(k, self.pool, ceil_mode=True)
            v = F.max_pool2d(v, self.pool, ceil_mode=True)
        scores = torch.bmm(q.flatten(2).transpose(1, 2), k.flatten(2)) * self.scale
        return torch.softmax(scores, dim=-1), v

    def forward(self, f_e: torch.Tensor, f_d: torch.Tensor) -> torch.Tensor:
        f_e, f_d = self.pos(f_e), self.pos(f_d)                         # eqs. 6, 7
        a, v = self.attention(f_e, f_d)                                  # eqs. 8, 9
        b, c, h, w = v.shape
        av = torch.bmm(a, v.flatten(2).transpose(1, 2)).transpose(1, 2).reshape(b, c, h, w)
        gate = _resize(self.op2(av), f_e.shape[-2:])
        self.last_gate = gate.detach().mean(1, keepdim=True)
        up = self.op3(_resize(f_d, f_e.shape[-2:]))
        return torch.cat([f_e * gate, up], dim=1)                       # eq. 5


class DecoderStage(nn.Module):
    """``F_j = Psi(concat(Phi(F_{j-1}), R(F_E, F_{j-1})))`` (eqs. 2 and 4)."""

    def __init__(self, in_ch: int, skip_ch: int, out_ch: int, attn_ch: int, pool: int,
                 pos_mode: str, attn_scale: str, improved_skip: bool = True) -> None:
        super().__init__()
        self.up = nn.ConvTranspose2d(in_ch, out_ch, 2, stride=2)
        # improved_skip=False: R(F_E, F_D) = F_E, U-Net's plain concatenation (Table 1, first two rows)
        self.skip = CrossAttentionSkip(skip_ch, in_ch, out_ch, attn_ch, pool, pos_mode, attn_scale) \
            if improved_skip else None
        self.psi = psi(out_ch + (self.skip.out_channels if self.skip is not None else skip_ch), out_ch)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        u = _resize(self.up(x), skip.shape[-2:])
        return self.psi(torch.cat([u, self.skip(skip, x) if self.skip is not None else skip], dim=1))


class ReExtractionStage(nn.Module):
    """``F^E2_k = op_k(concat(Phi_E2(F^E2_{k-1}), F^D1_j))`` (eq. 3)."""

    def __init__(self, in_ch: int, out_ch: int, fuse_ch: int) -> None:
        super().__init__()
        self.phi = nn.Sequential(nn.MaxPool2d(2), conv_bn_relu(in_ch, out_ch), conv_bn_relu(out_ch, out_ch))
        self.op = psi(out_ch + fuse_ch, out_ch)

    def forward(self, x: torch.Tensor, f_d1: torch.Tensor) -> torch.Tensor:
        return self.op(torch.cat([self.phi(x), f_d1], dim=1))


class FullResolutionStem(Encoder):
    """An encoder with features at strides 2, 4, 8, 16 (a MobileNetV2) plus a stride-1 feature.

    EFEN's first skip sits at the input resolution, which ImageNet backbones other than VGG
    do not compute. Two conv3x3 + BN + ReLU on the image give that feature (``width``
    channels); the wrapped encoder's features at strides 2..16 follow, its deeper stages are
    dropped (``truncate(16)`` where the encoder offers it, e.g. :class:`MobileNetV2Encoder`).
    """

    def __init__(self, encoder: Encoder, in_channels: int, width: int = 32) -> None:
        super().__init__()
        if hasattr(encoder, "truncate"):
            encoder.truncate(SKIP_STRIDES[-1])
        try:
            taps = [list(encoder.reductions).index(s) for s in SKIP_STRIDES[1:]]
        except ValueError:
            raise ConfigError(f"EFEN needs encoder features at strides {SKIP_STRIDES[1:]}, "
                              f"{type(encoder).__name__} gives {encoder.reductions}") from None
        self.stem = nn.Sequential(conv_bn_relu(in_channels, width), conv_bn_relu(width, width))
        self.encoder, self._taps = encoder, taps
        self.out_channels = [width, *(encoder.out_channels[i] for i in taps)]
        self.reductions = list(SKIP_STRIDES)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = self.encoder(x)
        return [self.stem(x), *(feats[i] for i in self._taps)]


class EFEN(SegmentationModel):
    """EFEN (Fig. 1): VGG-19 U-Net + feature re-extraction U-Net, cross-attention skips.

    Args:
        in_channels: 1 or 3.
        num_classes: output logits (1 = binary).
        encoder: ``"vgg19"`` (default) or ``"vgg19_bn"``, or any zoo encoder giving
            features at strides 1, 2, 4, 8, 16 (an :class:`Encoder` instance also works).
        pretrained_encoder: local ImageNet weights for the encoder (torchvision layout).
        decoder_widths: D1 and D2 stage widths at strides 8, 4, 2, 1.
        reextract_widths: E2 widths at strides 1, 2, 4, 8, 16.
        attn_ratio: ``d_k = skip channels // attn_ratio`` in each skip.
        attn_stride: coarsest input stride the attention tokens are pooled to (see module doc).
        pos_encoding: ``"2d"`` or ``"1d"`` (Box 1 on flattened positions).
        attn_scale: ``"dk"`` (paper) or ``"sqrt"``.
        deep_supervision: in training also return the first U-Net's logits (1x1 head
            on D1's output; the paper discards that conv, so off by default).
        reextract: the feature re-extraction network (E2 + D2); ``False`` leaves the U-Net
            E1 + D1 with its head on D1 (Table 1's baseline).
        improved_skip: the cross-attention skips (eqs. 5-9); ``False`` concatenates the
            encoder feature as U-Net does.
        encoder_options: extra options of :func:`create_encoder` (e.g. ``{"normalize": "imagenet"}``).
        stem_width: with an encoder that has no stride-1 feature (MobileNetV2), add a
            :class:`FullResolutionStem` of this many channels for the first skip; ``None``
            (default) requires the encoder to give stride 1 itself (VGG-19).
    """

    def __init__(self, in_channels: int = 3, num_classes: int = 1, encoder: str | Encoder = "vgg19",
                 pretrained_encoder: str | os.PathLike[str] | None = None,
                 decoder_widths: Sequence[int] = (128, 64, 32, 16),
                 reextract_widths: Sequence[int] = (16, 32, 64, 128, 256),
                 attn_ratio: int = 4, attn_stride: int = 8, pos_encoding: str = "2d", attn_scale: str = "dk",
                 deep_supervision: bool = False, reextract: bool = True, improved_skip: bool = True,
                 encoder_options: dict | None = None, stem_width: int | None = None) -> None:
        super().__init__(in_channels, num_classes, stride=16, deep_supervision=deep_supervision)
        if len(decoder_widths) != 4 or len(reextract_widths) != 5:
            raise ConfigError("EFEN needs 4 decoder_widths (strides 8..1) and 5 reextract_widths (strides 1..16)")
        if deep_supervision and not reextract:
            raise ConfigError("EFEN: deep_supervision supervises D1 beside D2, which reextract=False removes")
        if isinstance(encoder, str):
            kw = {"pool_last": False} if encoder.startswith("vgg") else {}
            enc = create_encoder(encoder, in_channels=in_channels,
                                 pretrained=os.fspath(pretrained_encoder) if pretrained_encoder else None,
                                 **{**kw, **(encoder_options or {})})
        else:
            enc = encoder
        if stem_width is not None and 1 not in enc.reductions:
            enc = FullResolutionStem(enc, in_channels, stem_width)
        try:
            self._taps = [list(enc.reductions).index(s) for s in SKIP_STRIDES]
        except ValueError:
            raise ConfigError(f"EFEN needs encoder features at strides {SKIP_STRIDES}, "
                              f"{type(enc).__name__} gives {enc.reductions} (stem_width=N adds a stride-1 "
                              "stem)") from None
        self.encoder = enc
        e1 = [enc.out_channels[i] for i in self._taps]             # strides 1..16
        dec = list(decoder_widths)
        e2 = list(reextract_widths)

        def decoder(bottom: int) -> nn.ModuleList:
            chans = [bottom, *dec]
            return nn.ModuleList(
                DecoderStage(chans[j], e1[3 - j], chans[j + 1], max(1, e1[3 - j] // attn_ratio),
                             max(1, attn_stride // (2 * SKIP_STRIDES[3 - j])), pos_encoding, attn_scale,
                             improved_skip)
                for j in range(4)
            )

        self.decoder1 = decoder(e1[4])
        self.reextract_stem: nn.Module | None = None
        self.reextract: nn.ModuleList | None = None
        self.decoder2: nn.ModuleList | None = None
        if reextract:
            # E2 input: the image merged with the first U-Net's output features (its 1x1 conv discarded)
            self.reextract_stem = nn.Sequential(conv_bn_relu(in_channels + dec[3], e2[0]),
                                                conv_bn_relu(e2[0], e2[0]))
            fuse = [dec[2], dec[1], dec[0], e1[4]]                  # D1 features at strides 2, 4, 8; bridge at 16
            self.reextract = nn.ModuleList(ReExtractionStage(e2[k], e2[k + 1], fuse[k]) for k in range(4))
            self.decoder2 = decoder(e2[4])
        self.head = nn.Conv2d(dec[3], num_classes, 1)
        self.aux_head = nn.Conv2d(dec[3], num_classes, 1) if deep_supervision else None

    def forward_logits(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
        feats = self.encoder(x)
        e1 = [feats[i] for i in self._taps]
        y = e1[4]
        d1 = []
        for j, stage in enumerate(self.decoder1):
            y = stage(y, e1[3 - j])
            d1.append(y)                                            # strides 8, 4, 2, 1
        if self.reextract is None or self.reextract_stem is None or self.decoder2 is None:
            return self.head(d1[3])                                 # Table 1 baseline: the U-Net alone
        z = self.reextract_stem(torch.cat([x, d1[3]], dim=1))
        for k, stage in enumerate(self.reextract):
            z = stage(z, e1[4] if k == 3 else d1[2 - k])
        for j, stage in enumerate(self.decoder2):
            z = stage(z, e1[3 - j])                                 # skips from E1 (eq. 4)
        main = self.head(z)
        if self.aux_head is not None and self.training:
            return main, [self.aux_head(d1[3])]
        return main

    def attention_maps(self) -> dict[str, torch.Tensor]:
        """The last forward's skip gates (channel mean of ``op2(AV)``), by module name."""
        return {name: m.last_gate for name, m in self.named_modules()
                if isinstance(m, CrossAttentionSkip) and m.last_gate is not None}


@register_model("efen", input_size=(288, 384), paper=PAPER, paper_params=29_440_000)
def efen(**kwargs) -> EFEN:
    """EFEN: VGG-19 U-Net + feature re-extraction, cross-attention skips (29.4M parameters)."""
    return EFEN(**kwargs)


@register_model("efen_unet", input_size=(288, 384), paper=PAPER,
                default_options={"reextract": False, "improved_skip": False})
def efen_unet(**kwargs) -> EFEN:
    """EFEN ablation "U-Net (baseline)": VGG-19 U-Net, concatenation skips, no re-extraction (Table 1)."""
    return EFEN(**kwargs)


@register_model("efen_reextract", input_size=(288, 384), paper=PAPER, default_options={"improved_skip": False})
def efen_reextract(**kwargs) -> EFEN:
    """EFEN ablation "U-Net + Process1": feature re-extraction, concatenation skips (Table 1)."""
    return EFEN(**kwargs)


@register_model("efen_mobilenet_v2", input_size=(288, 384), paper=PAPER,
                default_options={"encoder": "mobilenet_v2", "encoder_options": {"normalize": "imagenet"},
                                 "stem_width": 32})
def efen_mobilenet_v2(**kwargs) -> EFEN:
    """EFEN on a MobileNetV2 encoder (strides 2-16) with a full-resolution stem; pass the ImageNet file."""
    return EFEN(**kwargs)
