"""Masked autoencoder (MAE, He et al., CVPR 2022) for self-supervised pretraining and GRCSF.

A ViT-style MAE, small enough to train on a CPU:

* **patchify** an image ``(B, C, H, W)`` into ``L = (H/p)(W/p)`` patches of
  ``p*p*C`` values (MAE Sec. 3, "we divide an image into regular
  non-overlapping patches");
* **random masking**: keep ``round(L (1 - r))`` patches per image, chosen
  by the arg-sort of uniform noise (MAE Sec. 3, "random sampling"); the
  number masked is exactly ``L - round(L (1 - r))``;
* an **encoder** of Transformer blocks on the *visible* patches only, with
  fixed 2-D sine-cosine position embeddings (so any ``H, W`` that are
  multiples of ``p`` work);
* a **lightweight decoder** that receives the encoded visible tokens plus a
  shared learned mask token at every masked position and predicts the
  pixels of every patch;
* the **loss** is the mean squared error on masked patches only, against
  per-patch normalised pixels when ``norm_pix_loss`` (MAE Eq. in Sec. 3,
  "normalized pixels as the reconstruction target").

GRCSF's Region Compensation Unit needs the *residual map*
``R = |reconstruction - input|`` (channel mean). :meth:`MAE.residual_map`
averages it over ``K`` complementary masking passes, so every patch is
reconstructed from its context at least once; the passes are deterministic
(a fixed permutation of the patches shifted by ``seed``), which also keeps
the map ONNX-exportable (no random operators in the graph).

>>> from medattn.models import create
>>> mae = create("mae", in_channels=3)
>>> loss, pred, mask = mae.forward_loss(torch.rand(2, 3, 64, 64), mask_ratio=0.75)
>>> pred.shape, int(mask[0].sum())
(torch.Size([2, 16, 768]), 12)
"""

from __future__ import annotations

import math

import torch
from torch import nn

from medattn.models.registry import register_model

# --------------------------------------------------------------------------- blocks


def sincos_pos_embed(grid_h: int, grid_w: int, dim: int, device: torch.device | None = None) -> torch.Tensor:
    """Fixed 2-D sine-cosine position embedding ``(grid_h * grid_w, dim)`` (MAE, after Vaswani et al.).

    Half of the channels encode the row, half the column; ``dim`` must be a multiple of 4.
    """
    if dim % 4:
        raise ValueError(f"embedding dim must be a multiple of 4, got {dim}")
    quarter = dim // 4
    omega = 1.0 / (10000 ** (torch.arange(quarter, dtype=torch.float32, device=device) / quarter))
    ys = torch.arange(grid_h, dtype=torch.float32, device=device)
    xs = torch.arange(grid_w, dtype=torch.float32, device=device)
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    out_y = yy.reshape(-1, 1) * omega.reshape(1, -1)
    out_x = xx.reshape(-1, 1) * omega.reshape(1, -1)
    return torch.cat([out_y.sin(), out_y.cos(), out_x.sin(), out_x.cos()], dim=1)


class Attention(nn.Module):
    """Multi-head self-attention written with plain matmuls (exports to ONNX unchanged)."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = (q @ k.transpose(-2, -1)) * self.scale
        x = (attn.softmax(dim=-1) @ v).transpose(1, 2).reshape(b, n, c)
        return self.proj(x)


class Block(nn.Module):
    """Pre-norm Transformer block: ``x + MSA(LN(x))``, then ``x + MLP(LN(x))``."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


# --------------------------------------------------------------------------- masks


def _scramble_step(n: int) -> int:
    """A step coprime to ``n`` near ``n / golden ratio``: ``p -> p * step mod n`` spreads patches evenly."""
    if n <= 2:
        return 1
    step = max(1, round(n * 0.6180339887))
    while math.gcd(step, n) != 1:
        step += 1
    return step


def complementary_sets(num_patches: int, mask_ratio: float, n_masks: int, seed: int = 0) -> list[list[int]]:
    """Indices of the masked patches of each of ``n_masks`` complementary passes (plain Python ints).

    Patches are ranked by the fixed permutation ``rank(p) = (p * step + seed) mod L``
    (a Weyl sequence: masked patches are spread over the image, not clustered);
    pass ``k`` masks the cyclic window of ``L - round(L (1 - r))`` ranks starting at
    ``k L / K``. With enough passes the windows cover all ranks, so every patch is
    masked (reconstructed from its context) at least once. Python ints keep the
    passes constant in a traced / exported graph.
    """
    n_mask = num_patches - round(num_patches * (1.0 - mask_ratio))
    if n_masks < 1 or n_mask < 1 or n_masks * n_mask < num_patches:
        need = math.ceil(num_patches / max(n_mask, 1))
        raise ValueError(
            f"{n_masks} masks of ratio {mask_ratio} cannot cover all {num_patches} patches; use n_masks >= {need}"
        )
    step = _scramble_step(num_patches)
    rank = [(p * step + seed) % num_patches for p in range(num_patches)]
    sets = []
    for k in range(n_masks):
        start = (k * num_patches) // n_masks
        sets.append([p for p in range(num_patches) if (rank[p] - start) % num_patches < n_mask])
    return sets


def complementary_masks(num_patches: int, mask_ratio: float, n_masks: int, seed: int = 0,
                        device: torch.device | None = None) -> torch.Tensor:
    """Boolean ``(K, L)`` masks (True = masked) of :func:`complementary_sets`; their union is all patches."""
    masks = torch.zeros(n_masks, num_patches, dtype=torch.bool, device=device)
    for k, idx in enumerate(complementary_sets(num_patches, mask_ratio, n_masks, seed)):
        masks[k, idx] = True
    return masks


# --------------------------------------------------------------------------- model


class MAE(nn.Module):
    """Masked autoencoder with a ViT encoder and a light Transformer decoder.

    Args:
        in_channels: image channels (1 or 3).
        patch_size: side ``p`` of the square patches.
        embed_dim, depth, num_heads: encoder width, number of blocks, heads.
        decoder_dim, decoder_depth, decoder_heads: decoder width, blocks, heads.
        mlp_ratio: hidden size of the MLPs relative to the width.
        norm_pix_loss: regress per-patch normalised pixels (MAE default).
        mask_ratio: default fraction of masked patches (0.75, MAE Sec. 4).
        img_size: nominal training size (documentation only; any multiple of ``p`` works).
    """

    def __init__(self, in_channels: int = 3, patch_size: int = 16, embed_dim: int = 192, depth: int = 4,
                 num_heads: int = 3, decoder_dim: int = 128, decoder_depth: int = 2, decoder_heads: int = 4,
                 mlp_ratio: float = 4.0, norm_pix_loss: bool = True, mask_ratio: float = 0.75,
                 img_size: int = 256) -> None:
        super().__init__()
        if not 0.0 < mask_ratio < 1.0:
            raise ValueError(f"mask_ratio must be in (0, 1), got {mask_ratio}")
        self.in_channels = in_channels
        self.patch_size = patch_size
        self.embed_dim = embed_dim
        self.decoder_dim = decoder_dim
        self.norm_pix_loss = norm_pix_loss
        self.mask_ratio = mask_ratio
        self.img_size = img_size
        self.options = {
            "in_channels": in_channels, "patch_size": patch_size, "embed_dim": embed_dim, "depth": depth,
            "num_heads": num_heads, "decoder_dim": decoder_dim, "decoder_depth": decoder_depth,
            "decoder_heads": decoder_heads, "mlp_ratio": mlp_ratio, "norm_pix_loss": norm_pix_loss,
            "mask_ratio": mask_ratio, "img_size": img_size,
        }
        patch_dim = patch_size * patch_size * in_channels
        # encoder
        self.patch_embed = nn.Linear(patch_dim, embed_dim)
        self.blocks = nn.ModuleList([Block(embed_dim, num_heads, mlp_ratio) for _ in range(depth)])
        self.norm = nn.LayerNorm(embed_dim)
        # decoder
        self.decoder_embed = nn.Linear(embed_dim, decoder_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_dim))
        self.decoder_blocks = nn.ModuleList(
            [Block(decoder_dim, decoder_heads, mlp_ratio) for _ in range(decoder_depth)]
        )
        self.decoder_norm = nn.LayerNorm(decoder_dim)
        self.decoder_pred = nn.Linear(decoder_dim, patch_dim)
        self._init_weights()

    def _init_weights(self) -> None:
        nn.init.normal_(self.mask_token, std=0.02)
        # MAE initialises the patch projection like a conv (xavier on the flattened weight)
        nn.init.xavier_uniform_(self.patch_embed.weight)
        for m in self.modules():
            if isinstance(m, nn.Linear) and m is not self.patch_embed:
                nn.init.xavier_uniform_(m.weight)
            if isinstance(m, nn.Linear) and m.bias is not None:
                nn.init.zeros_(m.bias)

    # ---------------------------------------------------------------- patches
    def _grid(self, imgs: torch.Tensor) -> tuple[int, int]:
        # plain ints: the masking passes are constants of a traced / exported graph
        h, w = int(imgs.shape[-2]), int(imgs.shape[-1])
        p = self.patch_size
        if h % p or w % p:
            raise ValueError(f"MAE input {h}x{w} is not a multiple of the patch size {p}")
        return h // p, w // p

    def patchify(self, imgs: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` -> ``(B, L, p*p*C)``, patches in row-major order, pixels as (p, p, C)."""
        if imgs.ndim != 4 or imgs.shape[1] != self.in_channels:
            raise ValueError(f"MAE expects (B, {self.in_channels}, H, W), got {tuple(imgs.shape)}")
        gh, gw = self._grid(imgs)
        p, c = self.patch_size, self.in_channels
        x = imgs.reshape(imgs.shape[0], c, gh, p, gw, p)
        x = x.permute(0, 2, 4, 3, 5, 1)
        return x.reshape(imgs.shape[0], gh * gw, p * p * c)

    def unpatchify(self, x: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """Inverse of :meth:`patchify` for a patch grid ``(H/p, W/p)``."""
        gh, gw = grid
        p, c = self.patch_size, self.in_channels
        x = x.reshape(x.shape[0], gh, gw, p, p, c).permute(0, 5, 1, 3, 2, 4)
        return x.reshape(x.shape[0], c, gh * p, gw * p)

    # ---------------------------------------------------------------- masking
    def random_mask(self, batch: int, num_patches: int, mask_ratio: float,
                    generator: torch.Generator | None = None, device: torch.device | None = None
                    ) -> torch.Tensor:
        """Boolean ``(B, L)`` mask with exactly ``L - round(L (1 - r))`` True (masked) entries per row."""
        if not 0.0 <= mask_ratio < 1.0:
            raise ValueError(f"mask_ratio must be in [0, 1), got {mask_ratio}")
        n_keep = max(1, round(num_patches * (1.0 - mask_ratio)))
        noise_device = generator.device if generator is not None else device
        noise = torch.rand(batch, num_patches, generator=generator, device=noise_device)
        mask = torch.ones(batch, num_patches, dtype=torch.bool, device=noise.device)
        mask.scatter_(1, noise.argsort(dim=1)[:, :n_keep], False)
        return mask if device is None else mask.to(device)

    @staticmethod
    def visible_ids(mask: torch.Tensor) -> torch.Tensor:
        """``(B, L_visible)`` indices of the unmasked patches, in patch order (same count per row)."""
        mask = mask.unsqueeze(0) if mask.ndim == 1 else mask
        counts = (~mask).sum(dim=1)
        if bool((counts != counts[0]).any()):
            raise ValueError("every image of a batch must have the same number of visible patches")
        # stable sort puts visible (False) patches first, in increasing patch order
        return torch.argsort(mask.to(torch.int8), dim=1, stable=True)[:, : int(counts[0])]

    # ---------------------------------------------------------------- network
    def encode(self, imgs: torch.Tensor, ids_keep: torch.Tensor) -> torch.Tensor:
        """Encode the visible patches ``ids_keep`` (``(B, n)`` or ``(n,)``) -> ``(B, n, embed_dim)``."""
        gh, gw = self._grid(imgs)
        tokens = self.patch_embed(self.patchify(imgs))
        tokens = tokens + sincos_pos_embed(gh, gw, self.embed_dim, tokens.device).to(tokens.dtype)
        b, _, d = tokens.shape
        ids = ids_keep.expand(b, -1) if ids_keep.ndim == 1 else ids_keep
        x = torch.gather(tokens, 1, ids.unsqueeze(-1).expand(-1, -1, d))
        for blk in self.blocks:
            x = blk(x)
        return self.norm(x)

    def decode(self, latent: torch.Tensor, ids_keep: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """Predict every patch ``(B, L, p*p*C)`` from visible latents at ``ids_keep`` and mask tokens."""
        b, _, _ = latent.shape
        n = grid[0] * grid[1]
        ids = ids_keep.expand(b, -1) if ids_keep.ndim == 1 else ids_keep
        x = self.decoder_embed(latent)
        dim = x.shape[-1]
        keep = torch.zeros(b, n, 1, dtype=x.dtype, device=x.device).scatter(
            1, ids.unsqueeze(-1), torch.ones(b, ids.shape[1], 1, dtype=x.dtype, device=x.device))
        placed = torch.zeros(b, n, dim, dtype=x.dtype, device=x.device).scatter(
            1, ids.unsqueeze(-1).expand(-1, -1, dim), x)
        x = placed + self.mask_token.to(x.dtype) * (1.0 - keep)
        x = x + sincos_pos_embed(grid[0], grid[1], self.decoder_dim, x.device).to(x.dtype)
        for blk in self.decoder_blocks:
            x = blk(x)
        return self.decoder_pred(self.decoder_norm(x))

    def forward_encoder(self, imgs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Encode the patches not in ``mask`` (``(B, L)`` or ``(L,)`` bool, True = hidden)."""
        return self.encode(imgs, self.visible_ids(mask))

    def forward_decoder(self, latent: torch.Tensor, mask: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """Predict all patches from the latents of the visible patches of ``mask``."""
        return self.decode(latent, self.visible_ids(mask), grid)

    def target(self, imgs: torch.Tensor) -> torch.Tensor:
        """Regression target per patch: pixels, normalised per patch when ``norm_pix_loss``."""
        t = self.patchify(imgs)
        if self.norm_pix_loss:
            mean = t.mean(dim=-1, keepdim=True)
            var = t.var(dim=-1, keepdim=True, unbiased=False)
            t = (t - mean) / (var + 1e-6) ** 0.5
        return t

    def loss_from_pred(self, imgs: torch.Tensor, pred: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """MSE between ``pred`` and :meth:`target` averaged over masked patches only."""
        per_patch = ((pred.float() - self.target(imgs).float()) ** 2).mean(dim=-1)
        m = mask.expand_as(per_patch).to(per_patch.dtype)
        return (per_patch * m).sum() / m.sum().clamp_min(1.0)

    def forward_loss(self, imgs: torch.Tensor, mask_ratio: float | None = None,
                     generator: torch.Generator | None = None
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Mask ``mask_ratio`` of the patches at random, reconstruct; returns ``(loss, pred, mask)``.

        ``pred`` is ``(B, L, p*p*C)`` (normalised-pixel space when ``norm_pix_loss``),
        ``mask`` is ``(B, L)`` bool, True where the patch was hidden.
        """
        ratio = self.mask_ratio if mask_ratio is None else mask_ratio
        grid = self._grid(imgs)
        mask = self.random_mask(imgs.shape[0], grid[0] * grid[1], ratio, generator, device=imgs.device)
        ids = self.visible_ids(mask)
        pred = self.decode(self.encode(imgs, ids), ids, grid)
        return self.loss_from_pred(imgs, pred, mask), pred, mask

    def forward(self, imgs: torch.Tensor, mask_ratio: float | None = None,
                generator: torch.Generator | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Same as :meth:`forward_loss` (the training step of masked image modelling)."""
        return self.forward_loss(imgs, mask_ratio, generator)

    # ---------------------------------------------------------------- residual map
    def reconstruct(self, imgs: torch.Tensor, ids_keep: torch.Tensor, stats: str = "patch") -> torch.Tensor:
        """Pixel-space reconstruction ``(B, C, H, W)`` of ``imgs`` from the visible patches ``ids_keep``.

        With ``norm_pix_loss`` the network predicts per-patch normalised pixels, and ``stats``
        says whose mean and standard deviation turn them back into pixels:

        * ``"patch"``: each patch's own, as the MAE paper does for its visualisations. For a
          *hidden* patch this hands the reconstruction the patch's true brightness and
          contrast, so a residual only measures the structure the context cannot explain;
        * ``"context"``: the mean over the *visible* patches of their means and standard
          deviations (one value per image), i.e. only what the encoder saw. A hidden patch
          whose colour or contrast differs from its context (a dark lesion on skin) then
          leaves a residual.

        Without ``norm_pix_loss`` the prediction is already in pixel space and ``stats`` is unused.
        """
        if stats not in ("patch", "context"):
            raise ValueError(f"stats must be 'patch' or 'context', got {stats!r}")
        grid = self._grid(imgs)
        pred = self.decode(self.encode(imgs, ids_keep), ids_keep, grid)
        if self.norm_pix_loss:
            t = self.patchify(imgs)
            mean = t.mean(dim=-1, keepdim=True)
            std = (t.var(dim=-1, keepdim=True, unbiased=False) + 1e-6) ** 0.5
            if stats == "context":
                ids = ids_keep.expand(t.shape[0], -1) if ids_keep.ndim == 1 else ids_keep
                mean = torch.gather(mean, 1, ids.unsqueeze(-1)).mean(dim=1, keepdim=True)
                std = torch.gather(std, 1, ids.unsqueeze(-1)).mean(dim=1, keepdim=True)
            pred = pred * std + mean
        return self.unpatchify(pred, grid)

    def residual_map(self, imgs: torch.Tensor, mask_ratio: float | None = None, n_masks: int = 4,
                     seed: int = 0, stats: str = "context") -> torch.Tensor:
        """GRCSF's SSL residual map ``R = mean_c |x_hat - x|`` as ``(B, 1, H, W)``.

        Each pixel's residual is averaged over the passes (of
        :func:`complementary_sets`) in which its patch was masked, so it always
        comes from a reconstruction that did not see the patch, nor (``stats="context"``,
        the default; see :meth:`reconstruct`) the patch's own brightness and contrast.
        """
        ratio = self.mask_ratio if mask_ratio is None else mask_ratio
        grid = self._grid(imgs)
        n = grid[0] * grid[1]
        p = self.patch_size
        total = torch.zeros_like(imgs[:, :1])
        count = torch.zeros_like(imgs[:, :1])
        for masked in complementary_sets(n, ratio, n_masks, seed):
            hidden = set(masked)
            ids_keep = torch.tensor([i for i in range(n) if i not in hidden], device=imgs.device)
            rec = self.reconstruct(imgs, ids_keep, stats=stats)
            err = (rec - imgs).abs().mean(dim=1, keepdim=True)
            flags = torch.tensor([float(i in hidden) for i in range(n)], dtype=imgs.dtype, device=imgs.device)
            m = flags.reshape(1, 1, grid[0], 1, grid[1], 1).expand(1, 1, grid[0], p, grid[1], p)
            m = m.reshape(1, 1, grid[0] * p, grid[1] * p)
            total = total + err * m
            count = count + m
        return total / count.clamp_min(1.0)


@register_model(
    "mae",
    task="reconstruction",
    input_size=(256, 256),
    paper="He et al., Masked Autoencoders Are Scalable Vision Learners, CVPR 2022",
    default_options={"patch_size": 16, "embed_dim": 192, "depth": 4, "num_heads": 3, "decoder_dim": 128,
                     "decoder_depth": 2, "decoder_heads": 4, "mask_ratio": 0.75},
)
def mae(**kwargs) -> MAE:
    """Masked autoencoder (ViT, CPU-sized) whose residual map feeds GRCSF's RCU."""
    return MAE(**kwargs)
