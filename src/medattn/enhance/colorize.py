"""Colorization GAN for gray medical images (seed paper 002, sec. 3.2, eqs. 3-6).

* Generator: an encoder-decoder on a ResNet-style encoder (``resnet34`` in the
  paper; a light ResNet by default here), U-Net skips, and a SAGAN self-attention
  layer (Zhang et al., ICML 2019) on the stride-16 features; it maps a gray image
  (B, 1, H, W) in [0, 1] to RGB (B, 3, H, W) in [0, 1].
* Discriminator: strided convolutions with spectral normalisation and a
  self-attention layer; returns a real/fake logit per image and its intermediate
  feature maps.
* Losses (per image, averaged over the batch)::

      L_G = L_C + 1/2 L_A                                           (eq. 3)
      L_C = |y - G(x)| + sum_i 1/(w_i h_i) |phi_i(y) - phi_i(G(x))| (eq. 4)
      L_A = -log D(G(x))                                            (eq. 5)
      L_D = -log D(y) - log(1 - D(G(x)))                            (eq. 6)

  ``|.|`` is the mean absolute (L1) difference. The paper takes ``phi_i`` from
  "[13]" (SRGAN's VGG features) without naming the network; we use the
  discriminator's intermediate maps (feature matching), which needs no
  extra pretrained network, and state that choice here.
* Two time-scale updates (Heusel et al., 2017): the discriminator's learning
  rate is five times the generator's (sec. 3.5).
"""

from __future__ import annotations

import itertools
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from medattn.models.encoders.resnet import BasicBlock, ResNetEncoder


class SelfAttention(nn.Module):
    """SAGAN self-attention: ``o = gamma * softmax(Q^T K) V + x`` with 1x1 projections, ``gamma`` starting at 0."""

    def __init__(self, channels: int, sn: bool = False) -> None:
        super().__init__()
        wrap = spectral_norm if sn else (lambda m: m)
        inner = max(1, channels // 8)
        self.q = wrap(nn.Conv2d(channels, inner, 1))
        self.k = wrap(nn.Conv2d(channels, inner, 1))
        self.v = wrap(nn.Conv2d(channels, channels, 1))
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q = self.q(x).flatten(2).transpose(1, 2)  # (B, N, C/8)
        k = self.k(x).flatten(2)                  # (B, C/8, N)
        attn = torch.softmax(q @ k, dim=-1)       # (B, N, N): each position attends to all
        out = self.v(x).flatten(2) @ attn.transpose(1, 2)
        return x + self.gamma * out.view(b, c, h, w)


def _conv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class ColorizationGenerator(nn.Module):
    """Gray (B, 1, H, W) -> RGB (B, 3, H, W), both in [0, 1]; H, W multiples of 32.

    Args:
        encoder: ``"light"`` (BasicBlock ResNet, one block per stage, widths
            ``width * (16, 32, 64, 128)``) or ``"resnet34"`` (the paper's).
        width: channel multiplier of the light encoder.
    """

    in_channels = 1

    def __init__(self, encoder: str = "light", width: float = 1.0) -> None:
        super().__init__()
        if encoder == "resnet34":
            self.encoder = ResNetEncoder(BasicBlock, [3, 4, 6, 3], 1)
        elif encoder == "light":
            planes = [max(8, round(p * width)) for p in (16, 32, 64, 128)]
            self.encoder = ResNetEncoder(BasicBlock, [1, 1, 1, 1], 1, stem_channels=planes[0], planes=planes)
        else:
            raise ValueError(f"encoder must be 'light' or 'resnet34', got {encoder!r}")
        ch = self.encoder.out_channels  # strides 2, 4, 8, 16, 32
        self.attention = SelfAttention(ch[3])
        self.up = nn.ModuleList()
        cur = ch[4]
        for skip in (ch[3], ch[2], ch[1], ch[0]):
            self.up.append(_conv(cur + skip, skip))
            cur = skip
        self.last = nn.Sequential(_conv(cur + 1, cur), nn.Conv2d(cur, 3, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.encoder(x * 2 - 1)
        f[3] = self.attention(f[3])
        y = f[4]
        for block, skip in zip(self.up, (f[3], f[2], f[1], f[0]), strict=True):
            y = block(torch.cat([F.interpolate(y, size=skip.shape[-2:], mode="bilinear", align_corners=False), skip], 1))
        y = F.interpolate(y, size=x.shape[-2:], mode="bilinear", align_corners=False)
        # predict around the gray input: the luminance is given, the network adds the colour
        return torch.sigmoid(self.last(torch.cat([y, x], 1)) + torch.logit(x.clamp(1e-3, 1 - 1e-3)))


class ColorizationDiscriminator(nn.Module):
    """Spectral-normalised strided convolutions + self-attention; ``forward`` -> (logit (B,), features)."""

    def __init__(self, width: int = 32) -> None:
        super().__init__()
        chans = [3, width, width * 2, width * 4, width * 8]
        self.blocks = nn.ModuleList(
            nn.Sequential(spectral_norm(nn.Conv2d(a, b, 4, 2, 1)), nn.LeakyReLU(0.2, inplace=True))
            for a, b in itertools.pairwise(chans))
        self.attention = SelfAttention(chans[3], sn=True)
        self.head = spectral_norm(nn.Conv2d(chans[-1], 1, 3, padding=1))

    def forward(self, y: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        feats = []
        h = y * 2 - 1
        for i, block in enumerate(self.blocks):
            h = block(h)
            if i == 2:
                h = self.attention(h)
            feats.append(h)
        return self.head(h).mean(dim=(1, 2, 3)), feats


def feature_loss(real: Sequence[torch.Tensor], fake: Sequence[torch.Tensor]) -> torch.Tensor:
    """Eq. 4's second term: sum over maps of the mean |phi_i(y) - phi_i(G(x))| (real maps fixed)."""
    return sum((a.detach() - b).abs().mean() for a, b in zip(real, fake, strict=True))


def generator_loss(y: torch.Tensor, g: torch.Tensor, d_fake: torch.Tensor, feats_real: Sequence[torch.Tensor],
                   feats_fake: Sequence[torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
    """Eqs. 3-5: L_G = |y - G(x)| + feature term + 1/2 (-log D(G(x)))."""
    l1 = (y - g).abs().mean()
    feat = feature_loss(feats_real, feats_fake)
    adv = F.binary_cross_entropy_with_logits(d_fake, torch.ones_like(d_fake))  # -log sigmoid(logit)
    total = l1 + feat + 0.5 * adv
    return total, {"l1": float(l1.detach()), "feature": float(feat.detach()), "adv": float(adv.detach())}


def discriminator_loss(d_real: torch.Tensor, d_fake: torch.Tensor) -> torch.Tensor:
    """Eq. 6: -log D(y) - log(1 - D(G(x)))."""
    return (F.binary_cross_entropy_with_logits(d_real, torch.ones_like(d_real))
            + F.binary_cross_entropy_with_logits(d_fake, torch.zeros_like(d_fake)))


def load_colour_images(paths: Sequence[str | os.PathLike[str]], size: int, progress: bool = True) -> np.ndarray:
    """RGB uint8 (N, size, size, 3) of colour images (centre-cropped to square, then resized)."""
    from medattn.enhance._images import resize, track
    from medattn.io import read_rgb

    out = np.empty((len(paths), size, size, 3), np.uint8)
    for i, p in enumerate(track(paths, "reading colour images", len(paths), progress)):
        rgb = read_rgb(p)
        h, w = rgb.shape[:2]
        s = min(h, w)
        y0, x0 = (h - s) // 2, (w - s) // 2
        out[i] = resize(rgb[y0:y0 + s, x0:x0 + s], (size, size))
    return out


def to_gray_tensor(rgb: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) -> (B, 1, H, W) luminance (ITU-R 601 weights, as OpenCV's gray)."""
    w = torch.tensor([0.299, 0.587, 0.114], dtype=rgb.dtype, device=rgb.device).view(1, 3, 1, 1)
    return (rgb * w).sum(1, keepdim=True)


@dataclass
class GanResult:
    generator: ColorizationGenerator
    discriminator: ColorizationDiscriminator
    history: list[dict[str, float]]
    steps: int


def train_gan(images: np.ndarray, *, steps: int = 2000, batch: int = 16, lr_g: float = 1e-4, ttur: float = 5.0,
              encoder: str = "light", width: float = 1.0, bf16: bool = True, seed: int = 0,
              time_limit_s: float | None = None, run_dir: str | os.PathLike[str] | None = None,
              log_every: int = 50, progress: bool = True) -> GanResult:
    """Train G and D on colour ``images`` (N, S, S, 3) uint8 turned gray, alternating one D and one G step.

    Adam with betas (0, 0.9) as SAGAN; D's learning rate is ``ttur`` (5) times G's.
    bf16 autocast on CPU when ``bf16``. Checkpoints (``last.safetensors`` of the
    generator, loadable by name ``colorizer``) go to ``run_dir``.
    """
    torch.manual_seed(seed)
    gen_rng = torch.Generator().manual_seed(seed)
    g_net, d_net = ColorizationGenerator(encoder, width), ColorizationDiscriminator()
    opt_g = torch.optim.Adam(g_net.parameters(), lr=lr_g, betas=(0.0, 0.9))
    opt_d = torch.optim.Adam(d_net.parameters(), lr=lr_g * ttur, betas=(0.0, 0.9))
    data = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()
    size = int(images.shape[1])
    history: list[dict[str, float]] = []
    start = time.monotonic()
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16)
    step = 0
    g_net.train()
    d_net.train()
    while step < steps:
        idx = torch.randint(0, len(data), (batch,), generator=gen_rng)
        y = data[idx].float() / 255
        if torch.rand(1, generator=gen_rng) < 0.5:
            y = y.flip(-1)
        x = to_gray_tensor(y)
        with autocast:
            fake = g_net(x)
            d_real, _ = d_net(y)
            d_fake, _ = d_net(fake.detach())
            loss_d = discriminator_loss(d_real.float(), d_fake.float())
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_d.step()
        with autocast:
            d_fake, feats_fake = d_net(fake)
            with torch.no_grad():
                _, feats_real = d_net(y)
            loss_g, parts = generator_loss(y, fake.float(), d_fake.float(), [f.float() for f in feats_real],
                                           [f.float() for f in feats_fake])
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
        step += 1
        if step % log_every == 0 or step == steps:
            row = {"step": step, "loss_g": float(loss_g.detach()), "loss_d": float(loss_d.detach()), **parts,
                   "seconds": time.monotonic() - start}
            history.append(row)
            if progress:
                print(", ".join(f"{k} {v:.4g}" for k, v in row.items()), flush=True)
            if run_dir is not None:
                save_colorizer(g_net, run_dir, {"encoder": encoder, "width": width}, step, history, size)
        if time_limit_s is not None and time.monotonic() - start > time_limit_s:
            break
    if run_dir is not None:
        save_colorizer(g_net, run_dir, {"encoder": encoder, "width": width}, step, history, size)
    return GanResult(g_net.eval(), d_net.eval(), history, step)


def save_colorizer(generator: nn.Module, run_dir: str | os.PathLike[str], options: dict[str, Any], step: int,
                   history: list[dict[str, float]], size: int | None = None) -> Path:
    """Write the generator as ``run_dir/last.safetensors`` + card (model ``colorizer``, trained ``size``)."""
    from medattn.training.checkpoint import save_checkpoint

    Path(run_dir).mkdir(parents=True, exist_ok=True)
    return save_checkpoint(run_dir, "last", generator, name="colorizer", options=options, task="colorization",
                           input_size=(size, size) if size else None, metrics=history[-1] if history else {},
                           extra={"steps": step, "history": history})


@torch.no_grad()
def colorize(generator: nn.Module, gray: np.ndarray, size: int | None = 256) -> np.ndarray:
    """Colorize a gray uint8 (H, W) image -> RGB uint8 (H, W, 3).

    The network runs at ``size`` x ``size`` (None: the image size rounded to 32);
    the chroma it predicts is upsampled and recombined with the full-resolution
    gray, so the result keeps every detail of the input's luminance.
    """
    from medattn.enhance._images import resize

    g = np.asarray(gray)
    h, w = g.shape
    th, tw = (size, size) if size else (max(32, round(h / 32) * 32), max(32, round(w / 32) * 32))
    x = torch.from_numpy(np.array(resize(g, (th, tw)))).float().div(255)[None, None]
    rgb = generator.eval()(x)[0]
    # keep the predicted colour offset from gray, at full resolution
    offset = (rgb - to_gray_tensor(rgb[None])[0])[None]
    offset = F.interpolate(offset, size=(h, w), mode="bilinear", align_corners=False)[0]
    full = torch.from_numpy(g).float().div(255)[None] + offset
    return (full.clamp(0, 1).permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)


def colour_training_paths(data_root: str | os.PathLike[str], limit: int = 0, seed: int = 0) -> list[Path]:
    """Colour images the GAN learns from (``benchmarks/enhance_colorize.py``): isic2017-unlabeled and the
    PraNet training split of Kvasir-SEG + CVC-ClinicDB; ``limit`` > 0 draws a seeded ``limit`` of them."""
    from medattn.data import pranet_split

    root = Path(data_root)
    paths = sorted((root / "isic2017-unlabeled").rglob("*.jpg")) + [s.image for s in pranet_split(root)["train"]]
    if limit:
        paths = [paths[i] for i in np.random.default_rng(seed).permutation(len(paths))[:limit]]
    return paths


def colour_test_samples(data_root: str | os.PathLike[str]) -> list[Any]:
    """The held-out colour images the GAN is scored on: the first 40 Kvasir-SEG and first 24
    CVC-ClinicDB PraNet *test* images (never in :func:`colour_training_paths`)."""
    from medattn.data import pranet_split

    split = pranet_split(Path(data_root))
    return split["test_kvasir"][:40] + split["test_clinicdb"][:24]


def colorization_scores(generator: nn.Module, originals: np.ndarray, size: int | None
                        ) -> tuple[dict[str, float], np.ndarray, np.ndarray]:
    """How close colorized gray versions of colour ``originals`` (N, H, W, 3) uint8 come to them.

    Each original is turned gray (ITU-R 601), colorized by :func:`colorize` at ``size``
    and compared with the original: mean L1 on [0, 1] and mean per-image PSNR (dB), next
    to the same numbers for the gray image replicated to three channels (the baseline).
    Returns ``(scores, gray, colorized)``: those four numbers, the gray inputs (N, H, W)
    and the colorized images (N, H, W, 3).
    """
    from medattn.metrics.denoising import psnr

    held = np.asarray(originals)
    gray = np.rint(held.astype(np.float64) @ np.array([0.299, 0.587, 0.114])).astype(np.uint8)
    col = np.stack([colorize(generator, g, size=size) for g in gray])
    base = np.repeat(gray[..., None], 3, axis=3)
    scores = {"l1_colorized": float(np.abs(col.astype(float) - held).mean() / 255),
              "l1_gray": float(np.abs(base.astype(float) - held).mean() / 255),
              "psnr_colorized": float(np.mean([psnr(c, h) for c, h in zip(col, held, strict=True)])),
              "psnr_gray": float(np.mean([psnr(b, h) for b, h in zip(base, held, strict=True)]))}
    return scores, gray, col


def panel(gray: np.ndarray, colorized: np.ndarray, original: np.ndarray) -> np.ndarray:
    """Side by side: gray input | colorized | original, (H, 3W + 8, 3) uint8."""
    gap = np.full((gray.shape[0], 4, 3), 255, np.uint8)
    g3 = np.repeat(gray[..., None], 3, axis=2)
    return np.concatenate([g3, gap, colorized, gap, original], axis=1)


def steps_for(minutes: float, seconds_per_step: float) -> int:
    return max(1, math.floor(minutes * 60 / seconds_per_step))
