"""Swin-T encoder (Liu et al., ICCV 2021): patch embedding 4x4, stages of depth
(2, 2, 6, 2), widths 96..768, heads (3, 6, 12, 24), window 7.

Features are returned channels-first at strides 4, 8, 16, 32. ImageNet weights
load from a local file in either layout:

* timm ``swin_tiny_patch4_window7_224`` (``patch_embed.proj``,
  ``layers.N.blocks.M...``, ``layers.N.downsample...``; timm < 0.9 and the
  original Microsoft release put the downsample at the *end* of stage N, newer
  timm at the *start* of stage N + 1; both are recognised);
* torchvision ``swin_t`` (``features.0.0`` stem conv, ``features.{1,3,5,7}``
  stages, ``features.{2,4,6}`` patch merging, ``mlp.0``/``mlp.3``).

``relative_position_index`` and ``attn_mask`` buffers in those files are dropped:
they are recomputed here.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from medattn.models.blocks.swin import SwinStage
from medattn.models.encoders import register_encoder
from medattn.models.encoders.base import Encoder

_DROPPED_BUFFERS = ("relative_position_index", "attn_mask")


def remap_swin_state_dict(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Map a timm (old or new) or torchvision Swin state dict onto medattn's (new-timm) keys.

    Classifier head, final norm and recomputed buffers are dropped.
    """
    out: dict[str, torch.Tensor] = {}
    if any(k.startswith("features.") for k in state_dict):
        for k, v in state_dict.items():
            if k.endswith(_DROPPED_BUFFERS) or not k.startswith("features."):
                continue  # head.*, norm.* (final), buffers
            m = re.match(r"features\.(\d+)\.(.*)", k)
            if m is None:
                continue
            idx, rest = int(m.group(1)), m.group(2)
            if idx == 0:  # stem: Conv2d, Permute, LayerNorm
                rest = rest.replace("0.", "proj.", 1) if rest.startswith("0.") else rest.replace("2.", "norm.", 1)
                out[f"patch_embed.{rest}"] = v
            elif idx % 2 == 1:  # stage (idx - 1) // 2: blocks
                rest = re.sub(r"^(\d+)\.mlp\.0\.", r"\1.mlp.fc1.", rest)
                rest = re.sub(r"^(\d+)\.mlp\.3\.", r"\1.mlp.fc2.", rest)
                out[f"layers.{(idx - 1) // 2}.blocks.{rest}"] = v
            else:  # patch merging in front of stage idx // 2
                out[f"layers.{idx // 2}.downsample.{rest}"] = v
        return out
    old_layout = any(k.startswith("layers.0.downsample.") for k in state_dict)
    for k, v in state_dict.items():
        if k.endswith(_DROPPED_BUFFERS) or k.startswith(("head.", "norm.")):
            continue
        m = re.match(r"layers\.(\d+)\.downsample\.(.*)", k)
        if m and old_layout:
            k = f"layers.{int(m.group(1)) + 1}.downsample.{m.group(2)}"
        out[k] = v
    return out


class PatchEmbed(nn.Module):
    """Non-overlapping ``patch x patch`` convolution then LayerNorm; output ``(B, H/p, W/p, C)``."""

    def __init__(self, in_channels: int, dim: int, patch: int = 4) -> None:
        super().__init__()
        self.patch = patch
        self.proj = nn.Conv2d(in_channels, dim, patch, patch)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        ph, pw = (-h) % self.patch, (-w) % self.patch
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph))
        return self.norm(self.proj(x).permute(0, 2, 3, 1))


class SwinEncoder(Encoder):
    """Hierarchical Swin Transformer as a four-level encoder (strides 4, 8, 16, 32).

    Args:
        in_channels: image channels (a 3-channel stem in a weights file is summed for 1).
        embed_dim: width of the first stage; it doubles at each stage.
        depths: blocks per stage.
        num_heads: heads per stage.
        window_size: attention window side.
        drop_path_rate: stochastic depth, linearly increasing over all blocks.
    """

    def __init__(self, in_channels: int = 3, embed_dim: int = 96, depths: Sequence[int] = (2, 2, 6, 2),
                 num_heads: Sequence[int] = (3, 6, 12, 24), window_size: int = 7,
                 drop_path_rate: float = 0.1) -> None:
        super().__init__()
        if len(depths) != len(num_heads):
            raise ValueError(f"depths {tuple(depths)} and num_heads {tuple(num_heads)} differ in length")
        self.patch_embed = PatchEmbed(in_channels, embed_dim, 4)
        dims = [embed_dim * 2**i for i in range(len(depths))]
        dpr = torch.linspace(0, drop_path_rate, sum(depths)).tolist()
        layers, start = [], 0
        for i, (depth, heads) in enumerate(zip(depths, num_heads, strict=True)):
            layers.append(SwinStage(dims[max(i - 1, 0)], dims[i], depth, heads, window_size, downsample=i > 0,
                                    drop_path=dpr[start:start + depth]))
            start += depth
        self.layers = nn.ModuleList(layers)
        self.out_channels = dims
        self.reductions = [4 * 2**i for i in range(len(depths))]
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.patch_embed(x)
        feats = []
        for layer in self.layers:
            x = layer(x)
            feats.append(x.permute(0, 3, 1, 2).contiguous())
        return feats

    def remap_state_dict(self, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return remap_swin_state_dict(state_dict)


@register_encoder("swin_t")
def swin_t(in_channels: int = 3, **kwargs) -> SwinEncoder:
    """Swin-T: embed 96, depths (2, 2, 6, 2), heads (3, 6, 12, 24), window 7 (27.5M parameters without the classifier)."""
    return SwinEncoder(in_channels, **kwargs)
