"""Masked image modelling for CNN encoders (SimMIM, Xie et al. CVPR 2022; SparK, Tian et al. ICLR 2023).

Random square patches of the input are replaced by a learned mask value
(SimMIM's mask token, in pixel space so that *any* encoder can take the
image), the encoder computes its usual multi-scale features, and a light
top-down decoder (SparK's hierarchical decoder: a 1x1 lateral projection per
scale, upsample-and-add, a 3x3 conv) predicts the pixels. The loss is the
mean squared error against per-patch normalised pixels over the masked
patches only, as in MAE. Only the encoder's weights are kept afterwards.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from medattn.models.encoders import Encoder


def patchify(imgs: torch.Tensor, patch: int) -> torch.Tensor:
    """``(B, C, H, W)`` -> ``(B, L, p*p*C)`` (the same layout as :meth:`medattn.models.mae.MAE.patchify`)."""
    b, c, h, w = imgs.shape
    x = imgs.reshape(b, c, h // patch, patch, w // patch, patch).permute(0, 2, 4, 3, 5, 1)
    return x.reshape(b, (h // patch) * (w // patch), patch * patch * c)


def random_patch_mask(batch: int, num_patches: int, mask_ratio: float,
                      generator: torch.Generator | None = None) -> torch.Tensor:
    """Boolean ``(B, L)``, exactly ``L - round(L (1 - r))`` True (masked) per row."""
    n_keep = max(1, round(num_patches * (1.0 - mask_ratio)))
    noise = torch.rand(batch, num_patches, generator=generator)
    mask = torch.ones(batch, num_patches, dtype=torch.bool)
    mask.scatter_(1, noise.argsort(dim=1)[:, :n_keep], False)
    return mask


def masked_mse(pred: torch.Tensor, imgs: torch.Tensor, mask: torch.Tensor, patch: int,
               norm_pix: bool = True) -> torch.Tensor:
    """MSE between pixel predictions and (per-patch normalised) pixels over masked patches only."""
    p, t = patchify(pred.float(), patch), patchify(imgs.float(), patch)
    if norm_pix:
        mean = t.mean(dim=-1, keepdim=True)
        var = t.var(dim=-1, keepdim=True, unbiased=False)
        t = (t - mean) / (var + 1e-6) ** 0.5
    per_patch = ((p - t) ** 2).mean(dim=-1)
    m = mask.to(per_patch.dtype)
    return (per_patch * m).sum() / m.sum().clamp_min(1.0)


class MaskedEncoderModel(nn.Module):
    """An encoder plus a light decoder trained to fill in masked patches.

    Args:
        encoder: any :class:`~medattn.models.encoders.Encoder`.
        in_channels: image channels.
        patch_size: side of the masked squares (a multiple of the encoder stride keeps
            whole deep-feature cells hidden, as SparK does).
        decoder_dim: channels of the decoder.
        norm_pix_loss: regress per-patch normalised pixels.
    """

    def __init__(self, encoder: Encoder, in_channels: int = 3, patch_size: int = 32, decoder_dim: int = 64,
                 norm_pix_loss: bool = True) -> None:
        super().__init__()
        self.encoder = encoder
        self.in_channels = in_channels
        self.patch_size = patch_size
        self.norm_pix_loss = norm_pix_loss
        self.mask_token = nn.Parameter(torch.zeros(1, in_channels, 1, 1))
        self.lateral = nn.ModuleList([nn.Conv2d(c, decoder_dim, 1) for c in encoder.out_channels])
        self.smooth = nn.ModuleList([
            nn.Sequential(nn.Conv2d(decoder_dim, decoder_dim, 3, padding=1, bias=False),
                          nn.BatchNorm2d(decoder_dim), nn.GELU())
            for _ in encoder.out_channels[:-1]
        ])
        self.up = int(encoder.reductions[0])
        self.pred = nn.Conv2d(decoder_dim, in_channels * self.up * self.up, 1)

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Pixel prediction ``(B, C, H, W)`` from a (masked) image."""
        feats = self.encoder(x)
        y = self.lateral[-1](feats[-1])
        for i in range(len(feats) - 2, -1, -1):
            y = F.interpolate(y, size=feats[i].shape[-2:], mode="nearest") + self.lateral[i](feats[i])
            y = self.smooth[i](y)
        out = F.pixel_shuffle(self.pred(y), self.up) if self.up > 1 else self.pred(y)
        if out.shape[-2:] != x.shape[-2:]:
            out = F.interpolate(out, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return out

    def forward(self, imgs: torch.Tensor, mask_ratio: float = 0.75, generator: torch.Generator | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Returns ``(loss, prediction (B, C, H, W), mask (B, L))``."""
        b, _, h, w = imgs.shape
        p = self.patch_size
        if h % p or w % p:
            raise ValueError(f"input {h}x{w} is not a multiple of the masking patch size {p}")
        gh, gw = h // p, w // p
        mask = random_patch_mask(b, gh * gw, mask_ratio, generator).to(imgs.device)
        m = mask.reshape(b, 1, gh, 1, gw, 1).expand(b, 1, gh, p, gw, p).reshape(b, 1, h, w).to(imgs.dtype)
        x = imgs * (1.0 - m) + self.mask_token.to(imgs.dtype) * m
        pred = self.reconstruct(x)
        return masked_mse(pred, imgs, mask, p, self.norm_pix_loss), pred, mask
