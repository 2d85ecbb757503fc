"""Swin Transformer blocks (Liu et al., "Swin Transformer: Hierarchical Vision
Transformer using Shifted Windows", ICCV 2021).

Parameter names follow timm's ``SwinTransformerBlock`` (``norm1``, ``attn.qkv``,
``attn.proj``, ``attn.relative_position_bias_table``, ``norm2``, ``mlp.fc1``,
``mlp.fc2``) and ``PatchMerging`` (``norm``, ``reduction``), so ImageNet Swin
weights load with no renaming beyond the stage prefix.

Feature maps are channels-last ``(B, H, W, C)`` as in timm. Any ``H, W`` works:
the map is padded to a window multiple and the padded tokens are masked out
of the attention, so real tokens never attend to padding (the original code
lets them; masking makes the output independent of how much padding there is).

Everything here exports to ONNX with the TorchScript exporter (roll, gather,
matmul, softmax); the shifted-window mask is built from
``arange`` comparisons, which tracing folds into a constant.

Equations (Liu et al., Eq. 3 and 4)::

    z' = W-MSA(LN(z)) + z          z  = MLP(LN(z')) + z'          (regular windows)
    z' = SW-MSA(LN(z)) + z         ...                            (shifted windows)
    Attention(Q, K, V) = SoftMax(Q K^T / sqrt(d) + B) V           (B: relative position bias)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# timm's value: exp(-100) is 0 in float32 and, unlike -inf, stays finite under bf16/fp16.
_MASK_VALUE = -100.0


def window_partition(x: torch.Tensor, window_size: int) -> torch.Tensor:
    """``(B, H, W, C)`` -> ``(B * nW, window_size**2, C)``; H and W must be window multiples."""
    _, h, w, c = x.shape
    ws = window_size
    x = x.reshape(-1, h // ws, ws, w // ws, ws, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, ws * ws, c)


def window_reverse(windows: torch.Tensor, window_size: int, h: int, w: int) -> torch.Tensor:
    """Inverse of :func:`window_partition`: ``(B * nW, ws**2, C)`` -> ``(B, H, W, C)``."""
    ws = window_size
    c = windows.shape[-1]
    x = windows.reshape(-1, h // ws, w // ws, ws, ws, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, h, w, c)


def relative_position_index(window_size: int) -> torch.Tensor:
    """``(N, N)`` index into the ``(2*ws - 1)**2`` bias table for each query/key pair (N = ws**2)."""
    ws = window_size
    coords = torch.stack(torch.meshgrid(torch.arange(ws), torch.arange(ws), indexing="ij")).flatten(1)
    rel = (coords[:, :, None] - coords[:, None, :]) + (ws - 1)  # (2, N, N), shifted to start at 0
    return rel[0] * (2 * ws - 1) + rel[1]


def window_attention_mask(
    padded_hw: tuple[int, int], valid_hw: tuple[int, int], window_size: int, shift: tuple[int, int],
    device: torch.device | None = None,
) -> torch.Tensor:
    """Additive mask ``(nW, N, N)`` for (shifted) window attention on a padded map.

    Tokens attend only to tokens with the same region label. After the cyclic
    shift by ``shift`` a window can hold pieces from up to 4 regions of the
    original map that are not neighbours (Liu et al., Fig. 4); padded tokens
    get their own label so real tokens ignore them.
    """
    (hp, wp), (h, w), ws = padded_hw, valid_hw, window_size

    def labels(n: int, valid: int, s: int) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.arange(n, device=device)
        region = (idx >= n - ws).long() + (idx >= n - s).long() if s else torch.zeros_like(idx)
        # position p of the rolled map holds original position (p + s) mod n
        return region, (idx + s) % n < valid

    rh, vh = labels(hp, h, shift[0])
    rw, vw = labels(wp, w, shift[1])
    lab = torch.where(vh[:, None] & vw[None, :], rh[:, None] * 3 + rw[None, :], torch.full_like(rh[:, None], 9))
    lab = lab.reshape(hp // ws, ws, wp // ws, ws).permute(0, 2, 1, 3).reshape(-1, ws * ws)
    different = lab[:, :, None] != lab[:, None, :]
    return different.float() * _MASK_VALUE


class DropPath(nn.Module):
    """Stochastic depth per sample (Huang et al., ECCV 2016); identity in eval mode."""

    def __init__(self, drop_prob: float = 0.0) -> None:
        super().__init__()
        self.drop_prob = drop_prob

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.drop_prob == 0.0 or not self.training:
            return x
        keep = 1.0 - self.drop_prob
        shape = (x.shape[0],) + (1,) * (x.ndim - 1)
        return x * x.new_empty(shape).bernoulli_(keep).div_(keep)

    def extra_repr(self) -> str:
        return f"drop_prob={self.drop_prob}"


class Mlp(nn.Module):
    """Two-layer feed-forward network ``fc2(GELU(fc1(x)))`` (timm names)."""

    def __init__(self, dim: int, hidden: int, drop: float = 0.0) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


class WindowAttention(nn.Module):
    """Multi-head self-attention inside windows with a relative position bias (Liu et al., Eq. 4).

    Args:
        dim: token channels.
        num_heads: attention heads (``dim`` must divide evenly).
        window_size: side of the square window.
        qkv_bias: learn a bias for q, k, v.
    """

    def __init__(self, dim: int, num_heads: int, window_size: int, qkv_bias: bool = True,
                 attn_drop: float = 0.0, proj_drop: float = 0.0) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.dim, self.num_heads, self.window_size = dim, num_heads, window_size
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window_size - 1) ** 2, num_heads))
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)
        # Recomputed, never loaded: foreign checkpoints' copies are dropped by the key mapping.
        self.register_buffer("relative_position_index", relative_position_index(window_size), persistent=False)
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.attn_drop = attn_drop
        self.proj_drop = nn.Dropout(proj_drop)

    def relative_position_bias(self) -> torch.Tensor:
        """``(heads, N, N)`` bias B gathered from the table."""
        n = self.window_size**2
        bias = self.relative_position_bias_table[self.relative_position_index.reshape(-1)]
        return bias.reshape(n, n, self.num_heads).permute(2, 0, 1)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """``x``: ``(B * nW, N, C)``; ``mask``: additive ``(nW, N, N)`` or None."""
        b_, n, c = x.shape
        hd = c // self.num_heads
        qkv = self.qkv(x).reshape(b_, n, 3, self.num_heads, hd).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # (B*nW, heads, N, hd)
        bias = self.relative_position_bias()
        if mask is not None:
            nw = mask.shape[0]
            # (B, nW, heads, N, hd) so one (nW, heads, N, N) bias broadcasts over the batch
            q, k, v = (t.reshape(-1, nw, self.num_heads, n, hd) for t in (q, k, v))
            bias = bias.unsqueeze(0) + mask.unsqueeze(1).to(bias.dtype)
        # Written out rather than F.scaled_dot_product_attention: with an additive float
        # mask on CPU the fused kernel falls back to a slower path (measured ~25% slower here).
        attn = (q * hd**-0.5) @ k.transpose(-2, -1) + bias.to(q.dtype)
        attn = F.dropout(attn.softmax(dim=-1), self.attn_drop, self.training)
        out = attn @ v
        out = out.reshape(b_, self.num_heads, n, hd).transpose(1, 2).reshape(b_, n, c)
        return self.proj_drop(self.proj(out))


class SwinTransformerBlock(nn.Module):
    """One Swin Transformer block (STB): (S)W-MSA then MLP, each pre-norm and residual.

    Args:
        dim: channels.
        num_heads: attention heads.
        window_size: window side M.
        shift_size: cyclic shift (``window_size // 2`` on every second block, 0 otherwise).
            No shift is applied along a side that fits in one window.
        mlp_ratio: hidden width of the MLP relative to ``dim``.
        drop_path: stochastic-depth probability.

    Input and output are ``(B, H, W, C)``.
    """

    def __init__(self, dim: int, num_heads: int, window_size: int = 7, shift_size: int = 0,
                 mlp_ratio: float = 4.0, qkv_bias: bool = True, drop: float = 0.0, attn_drop: float = 0.0,
                 drop_path: float = 0.0) -> None:
        super().__init__()
        if not 0 <= shift_size < window_size:
            raise ValueError(f"shift_size must be in [0, window_size), got {shift_size}")
        self.dim, self.window_size, self.shift_size = dim, window_size, shift_size
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, num_heads, window_size, qkv_bias, attn_drop, drop)
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, h, w, _ = x.shape
        ws = self.window_size
        shift = (self.shift_size if h > ws else 0, self.shift_size if w > ws else 0)
        ph, pw = (-h) % ws, (-w) % ws
        y = self.norm1(x)
        if ph or pw:
            y = F.pad(y, (0, 0, 0, pw, 0, ph))
        hp, wp = h + ph, w + pw
        if shift[0] or shift[1]:
            y = torch.roll(y, shifts=(-shift[0], -shift[1]), dims=(1, 2))
        mask = None
        if shift[0] or shift[1] or ph or pw:
            mask = window_attention_mask((hp, wp), (h, w), ws, shift, device=x.device)
        y = window_reverse(self.attn(window_partition(y, ws), mask), ws, hp, wp)
        if shift[0] or shift[1]:
            y = torch.roll(y, shifts=shift, dims=(1, 2))
        if ph or pw:
            y = y[:, :h, :w, :]
        x = x + self.drop_path(y)
        return x + self.drop_path(self.mlp(self.norm2(x)))


class PatchMerging(nn.Module):
    """2x2 neighbourhood concatenation -> LayerNorm -> linear 4C -> 2C (halves H and W).

    The concatenation order (x[0::2, 0::2], x[1::2, 0::2], x[0::2, 1::2], x[1::2, 1::2])
    is the one of the original code, timm and torchvision, so their weights fit.
    Odd sides are zero-padded.
    """

    def __init__(self, dim: int, out_dim: int | None = None) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(4 * dim)
        self.reduction = nn.Linear(4 * dim, out_dim or 2 * dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, h, w, c = x.shape
        if h % 2 or w % 2:
            x = F.pad(x, (0, 0, 0, w % 2, 0, h % 2))
            h, w = h + h % 2, w + w % 2
        x = x.reshape(-1, h // 2, 2, w // 2, 2, c).permute(0, 1, 3, 4, 2, 5).reshape(-1, h // 2, w // 2, 4 * c)
        return self.reduction(self.norm(x))


class SwinStage(nn.Module):
    """``downsample`` (patch merging or identity) then ``depth`` blocks, shifts alternating.

    The downsample sits at the start of the stage as in timm >= 0.9 (``layers.N.downsample``).
    """

    def __init__(self, dim: int, out_dim: int, depth: int, num_heads: int, window_size: int = 7,
                 downsample: bool = True, mlp_ratio: float = 4.0,
                 drop_path: float | list[float] = 0.0) -> None:
        super().__init__()
        self.downsample: nn.Module = PatchMerging(dim, out_dim) if downsample else nn.Identity()
        dpr = drop_path if isinstance(drop_path, list) else [drop_path] * depth
        self.blocks = nn.Sequential(*(
            SwinTransformerBlock(out_dim, num_heads, window_size, 0 if i % 2 == 0 else window_size // 2,
                                 mlp_ratio, drop_path=dpr[i])
            for i in range(depth)
        ))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.downsample(x))


__all__ = [
    "DropPath",
    "Mlp",
    "PatchMerging",
    "SwinStage",
    "SwinTransformerBlock",
    "WindowAttention",
    "relative_position_index",
    "window_attention_mask",
    "window_partition",
    "window_reverse",
]
