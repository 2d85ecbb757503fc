"""Low-dose CT denoisers: CADN (the project's attention denoiser), RED-CNN and DnCNN.

Every denoiser maps ``(B, 1, H, W)`` to ``(B, 1, H, W)`` at any H, W, in
*normalised HU*: ``x = HU / 1000`` (water 0, air -1, dense bone about +1; see
:data:`HU_SCALE` and :func:`hu_to_input`). All three learn the residual: the
network estimates the noise ``n(x)`` and returns ``x - n(x)``, the clean image.
No batch statistics touch the HU scale at inference (CADN and RED-CNN have no
normalisation layers; DnCNN's BatchNorm acts on hidden features only).

CADN (channel and spatial attention denoising network) follows the goals of the
BSANet paper's denoising half (attention + transfer learning, no architecture
given): a residual encoder-decoder in the RED-CNN family with three scales
(1, 1/2, 1/4), where every block is a residual pair of 3x3 convolutions
followed by the paper's feature-space attention (global average and max pooling
-> shared MLP -> sum -> sigmoid -> channel weights, as in its FSAM) and a
spatial attention map (channel mean and max -> 7x7 conv -> sigmoid, CBAM).
Downsampling by strided convolutions makes it ~10x cheaper per pixel than a
RED-CNN of the same parameter count, so it fits a CPU.

References: RED-CNN, Chen et al., IEEE TMI 36(12) 2017 (5 conv + 5 deconv,
96 filters 5x5, 3 shortcuts); DnCNN, Zhang et al., IEEE TIP 26(7) 2017 (17 layers,
64 filters, BN, residual learning); CBAM, Woo et al., ECCV 2018.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from medattn.models.registry import register_model

HU_SCALE = 1000.0
"""Models see ``HU / HU_SCALE``."""


def hu_to_input(hu: torch.Tensor) -> torch.Tensor:
    """Normalised model input from HU."""
    return hu / HU_SCALE


def output_to_hu(x: torch.Tensor) -> torch.Tensor:
    """HU from a model output."""
    return x * HU_SCALE


class _Denoiser(nn.Module):
    """Shared contract: one channel in and out, residual output, shape preserved."""

    in_channels = 1
    out_channels = 1
    task = "denoising"

    def _check(self, x: torch.Tensor) -> None:
        if x.ndim != 4 or x.shape[1] != 1:
            raise ValueError(f"denoisers take (B, 1, H, W) normalised-HU tensors, got {tuple(x.shape)}")


# -- CADN blocks --------------------------------------------------------------------------------


class ChannelAttention(nn.Module):
    """Channel weights from GAP and GMP through a shared MLP, summed, sigmoid (BSANet FSAM; CBAM Eq. 2)."""

    def __init__(self, channels: int, reduction: int = 8) -> None:
        super().__init__()
        hidden = max(channels // reduction, 4)
        self.mlp = nn.Sequential(nn.Conv2d(channels, hidden, 1), nn.ReLU(inplace=True), nn.Conv2d(hidden, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        avg = self.mlp(F.adaptive_avg_pool2d(x, 1))
        mx = self.mlp(F.adaptive_max_pool2d(x, 1))
        return x * torch.sigmoid(avg + mx)


class SpatialAttention(nn.Module):
    """A per-pixel weight from the channel mean and max through a 7x7 conv (CBAM Eq. 3)."""

    def __init__(self, kernel_size: int = 7) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        desc = torch.cat((x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)), dim=1)
        return x * torch.sigmoid(self.conv(desc))


class AttentionBlock(nn.Module):
    """``x + SA(CA(conv(relu(conv(x)))))``: a residual block whose update is attention-weighted."""

    def __init__(self, channels: int, reduction: int = 8, spatial: bool = True) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.LeakyReLU(0.1, inplace=True),
            nn.Conv2d(channels, channels, 3, padding=1),
        )
        self.ca = ChannelAttention(channels, reduction)
        self.sa = SpatialAttention() if spatial else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.sa(self.ca(self.body(x)))


class CADN(_Denoiser):
    """Channel- and spatial-attention residual encoder-decoder for LDCT denoising.

    Args:
        channels: widths at scales 1, 1/2, 1/4.
        blocks: attention blocks per scale on the way down (the bottleneck gets them all,
            the decoder one per scale).
        reduction: channel-attention MLP reduction.

    >>> import torch
    >>> net = CADN(channels=(8, 16, 32), blocks=(1, 1, 1))
    >>> net(torch.zeros(1, 1, 37, 50)).shape
    torch.Size([1, 1, 37, 50])
    """

    def __init__(self, channels: Sequence[int] = (32, 64, 128), blocks: Sequence[int] = (1, 1, 3),
                 reduction: int = 8) -> None:
        super().__init__()
        if len(channels) != 3 or len(blocks) != 3:
            raise ValueError("CADN takes three widths and three block counts (scales 1, 1/2, 1/4)")
        c1, c2, c3 = (int(c) for c in channels)
        self.head = nn.Conv2d(1, c1, 3, padding=1)
        self.enc1 = nn.Sequential(*[AttentionBlock(c1, reduction) for _ in range(blocks[0])])
        self.down1 = nn.Conv2d(c1, c2, 3, stride=2, padding=1)
        self.enc2 = nn.Sequential(*[AttentionBlock(c2, reduction) for _ in range(blocks[1])])
        self.down2 = nn.Conv2d(c2, c3, 3, stride=2, padding=1)
        self.mid = nn.Sequential(*[AttentionBlock(c3, reduction) for _ in range(blocks[2])])
        self.up2 = nn.ConvTranspose2d(c3, c2, 2, stride=2)
        self.dec2 = AttentionBlock(c2, reduction)
        self.up1 = nn.ConvTranspose2d(c2, c1, 2, stride=2)
        self.dec1 = AttentionBlock(c1, reduction)
        self.tail = nn.Conv2d(c1, 1, 3, padding=1)
        self.act = nn.LeakyReLU(0.1, inplace=True)
        # start as the identity map: the noise estimate begins at zero
        nn.init.zeros_(self.tail.weight)
        nn.init.zeros_(self.tail.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check(x)
        h, w = x.shape[-2:]
        ph, pw = (-h) % 4, (-w) % 4
        # replicate padding keeps the border statistics of CT (air) instead of inventing zeros (water)
        xp = F.pad(x, (0, pw, 0, ph), mode="replicate") if ph or pw else x
        f1 = self.enc1(self.act(self.head(xp)))
        f2 = self.enc2(self.act(self.down1(f1)))
        f3 = self.mid(self.act(self.down2(f2)))
        d2 = self.dec2(self.up2(f3) + f2)
        d1 = self.dec1(self.up1(d2) + f1)
        noise = self.tail(d1)[..., :h, :w]
        return x - noise


# -- RED-CNN ------------------------------------------------------------------------------------


class REDCNN(_Denoiser):
    """RED-CNN (Chen et al. 2017): 5 valid convolutions, 5 transposed convolutions, 3 shortcuts.

    The shortcuts add the input to the output, conv2's features to deconv4's input and
    conv4's to deconv2's, each followed by ReLU, as in the paper's Fig. 1; the residual
    to the input makes the net predict ``x - noise``.
    """

    def __init__(self, channels: int = 96, kernel_size: int = 5) -> None:
        super().__init__()
        c, k = int(channels), int(kernel_size)
        self.conv = nn.ModuleList([nn.Conv2d(1 if i == 0 else c, c, k) for i in range(5)])
        self.deconv = nn.ModuleList([nn.ConvTranspose2d(c, 1 if i == 4 else c, k) for i in range(5)])
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check(x)
        h0, w0 = x.shape[-2:]
        # five valid convolutions need 5 (k - 1) + 1 pixels; pad tiny inputs, crop back
        need = 5 * (self.conv[0].kernel_size[0] - 1) + 1
        ph, pw = max(0, need - h0), max(0, need - w0)
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode="replicate")
        r1 = x
        h = self.relu(self.conv[0](x))
        h = self.relu(self.conv[1](h))
        r2 = h
        h = self.relu(self.conv[2](h))
        h = self.relu(self.conv[3](h))
        r3 = h
        h = self.relu(self.conv[4](h))
        h = self.relu(self.deconv[0](h) + r3)
        h = self.relu(self.deconv[1](h))
        h = self.relu(self.deconv[2](h) + r2)
        h = self.relu(self.deconv[3](h))
        # the paper ends in ReLU on [0, 1] data; in HU/1000 the output is signed (air is -1)
        return (self.deconv[4](h) + r1)[..., :h0, :w0]


# -- DnCNN --------------------------------------------------------------------------------------


class DnCNN(_Denoiser):
    """DnCNN (Zhang et al. 2017): conv+ReLU, (depth-2) x conv+BN+ReLU, conv; returns ``x - noise``."""

    def __init__(self, depth: int = 17, channels: int = 64) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(1, channels, 3, padding=1), nn.ReLU(inplace=True)]
        for _ in range(depth - 2):
            layers += [nn.Conv2d(channels, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels),
                       nn.ReLU(inplace=True)]
        layers.append(nn.Conv2d(channels, 1, 3, padding=1))
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check(x)
        return x - self.body(x)


# -- registered variants ------------------------------------------------------------------------

_LDCT = "LDCT denoising (paper 000's denoising half: attention + transfer learning)"


@register_model("cadn", task="denoising", input_size=(64, 64), paper=_LDCT,
                default_options={"channels": [32, 64, 128], "blocks": [1, 1, 3], "reduction": 8})
def cadn(channels: Sequence[int] = (32, 64, 128), blocks: Sequence[int] = (1, 1, 3), reduction: int = 8) -> CADN:
    """CADN: channel+spatial attention residual encoder-decoder for LDCT (~1.0M params, medattn's design)."""
    return CADN(channels, blocks, reduction)


@register_model("cadn_small", task="denoising", input_size=(64, 64), paper=_LDCT,
                default_options={"channels": [24, 48, 96], "blocks": [1, 1, 2], "reduction": 8})
def cadn_small(channels: Sequence[int] = (24, 48, 96), blocks: Sequence[int] = (1, 1, 2), reduction: int = 8) -> CADN:
    """CADN, a lighter variant for CPU (~0.45M params)."""
    return CADN(channels, blocks, reduction)


@register_model("redcnn", task="denoising", input_size=(64, 64), paper="Chen et al., IEEE TMI 2017 (RED-CNN)",
                paper_params=1_848_865, default_options={"channels": 96, "kernel_size": 5})
def redcnn(channels: int = 96, kernel_size: int = 5) -> REDCNN:
    """RED-CNN residual encoder-decoder baseline (96 filters 5x5, ~1.85M params)."""
    return REDCNN(channels, kernel_size)


@register_model("dncnn", task="denoising", input_size=(64, 64), paper="Zhang et al., IEEE TIP 2017 (DnCNN)",
                paper_params=556_096, default_options={"depth": 17, "channels": 64})
def dncnn(depth: int = 17, channels: int = 64) -> DnCNN:
    """DnCNN residual denoiser baseline (17 layers, 64 filters, BatchNorm)."""
    return DnCNN(depth, channels)
