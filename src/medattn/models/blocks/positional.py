"""Sinusoidal positional encodings for feature maps (Vaswani et al., 2017; EFEN Box 1).

EFEN's Box 1 builds the classic table
``PE[pos, 2i] = sin(pos / 10000^(2i/d))``, ``PE[pos, 2i+1] = cos(pos / 10000^(2i/d))``
for a sequence. A feature map has two position axes, so two layouts are offered:

* ``"2d"``: the first half of the channels encode the row, the second half the
  column, each with Box 1's formula over ``d = C/2`` (the usual 2-D extension;
  nearby pixels get nearby codes in both directions);
* ``"1d"``: Box 1 applied literally to the raster-flattened positions
  ``pos = y * W + x`` with ``d = C``.

Everything is computed with torch ops from the input's shape, so it traces into
ONNX and follows the input's device and dtype.

>>> pe = sinusoidal_2d(4, 6, 8)
>>> pe.shape
torch.Size([8, 4, 6])
"""

from __future__ import annotations

import math

import torch
from torch import nn

MODES = ("2d", "1d")


def sinusoidal_1d(length: int, d_model: int, *, device: torch.device | None = None,
                  dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Box 1's ``(length, d_model)`` table; odd ``d_model`` keeps one more sine than cosine column."""
    position = torch.arange(length, device=device, dtype=torch.float32).unsqueeze(1)
    div_term = torch.exp(torch.arange(0, d_model, 2, device=device, dtype=torch.float32)
                         * (-math.log(10000.0) / d_model))
    angle = position * div_term
    # interleave sin / cos columns (Box 1's pe[:, 0::2] and pe[:, 1::2]) without in-place slice
    # assignment, which the ONNX exporter turns into slow scatter ops
    pe = torch.stack([torch.sin(angle), torch.cos(angle)], dim=-1).flatten(1)[:, :d_model]
    return pe.to(dtype)


def sinusoidal_2d(height: int, width: int, channels: int, *, device: torch.device | None = None,
                  dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``(channels, height, width)``: rows in the first ``ceil(C/2)`` channels, columns in the rest."""
    c_row = (channels + 1) // 2
    c_col = channels - c_row
    rows = sinusoidal_1d(height, c_row, device=device, dtype=dtype).t()[:, :, None].expand(c_row, height, width)
    cols = sinusoidal_1d(width, c_col, device=device, dtype=dtype).t()[:, None, :].expand(c_col, height, width)
    return torch.cat([rows, cols], dim=0)


def sinusoidal_flat(height: int, width: int, channels: int, *, device: torch.device | None = None,
                    dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``(channels, height, width)`` from Box 1 over raster positions ``y * width + x``."""
    return sinusoidal_1d(height * width, channels, device=device, dtype=dtype).t().reshape(channels, height, width)


class PositionalEncoding2d(nn.Module):
    """``F' = F + P(F)`` (EFEN eqs. 6-7) with a fixed sinusoidal ``P`` (no parameters).

    Args:
        mode: ``"2d"`` (row / column halves) or ``"1d"`` (Box 1 on flattened positions).
        scale: multiplier of the table (1 in the paper).
    """

    def __init__(self, mode: str = "2d", scale: float = 1.0) -> None:
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"positional encoding mode must be one of {MODES}, got {mode!r}")
        self.mode = mode
        self.scale = scale

    def encoding(self, x: torch.Tensor) -> torch.Tensor:
        """The ``(C, H, W)`` table for a ``(B, C, H, W)`` input."""
        fn = sinusoidal_2d if self.mode == "2d" else sinusoidal_flat
        _, c, h, w = x.shape
        return fn(h, w, c, device=x.device, dtype=x.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.scale * self.encoding(x).unsqueeze(0)

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}, scale={self.scale}"
