"""BSANet: bilateral spatial attention segmentation network (paper 000).

Journal of Computer Science and Software Applications 4(6), 2024: medical
image denoising and segmentation combining transfer learning and attention
mechanisms (``../shared/seeds/000_*.txt``), Section 3. The network, read in the order of the paper::

    image -> ResNeXt encoder -> ISAM (6 Swin blocks + Conv, residual)
          -> FSAM (Conv -> DConv -> GAP/GMP -> shared FC -> sigmoid, residual Conv)
          -> U-shaped multi-scale decoder (skips from the encoder)
          -> ARM (attention rendering: refine the most uncertain points)

Equations (numbering of the paper's Section 3):

* ISAM: ``f_i = STB_i(f_{i-1}), i = 1..6`` and ``f_ISAM = Conv(f_6) + f_0``.
* FSAM: ``f_gap = GAP(DConv(Conv(f_i)))``, ``f_gmp = GMP(DConv(Conv(f_i)))``,
  ``f'_gap = H_FC(f_gap)``, ``f'_gmp = H_FC(f_gmp)`` (one shared FC stack),
  ``alpha = sigma(f'_gap + f'_gmp)``, ``f' = alpha * f_i``, ``f_o = f' + Conv(f')``.
* ARM: PointRend (Kirillov et al., CVPR 2020) subdivision inference.

Where the paper is silent the choices are documented in ``docs/bsanet.md``
(ISAM input = deepest two encoder levels at stride 16, window 8; FSAM's
channel reduction in its last Conv with a 1x1 projection on the residual;
ARM fine features = stride-2 encoder map + last decoder map).

Training-mode contract (beyond :class:`~medattn.models.base.SegmentationModel`):

* the main output is the *rendered* mask in both modes (the ARM scatters its
  point predictions into the upsampled coarse logits), so the point head is
  trained by the ordinary dense loss too;
* after a training-mode forward, ``model.last_points = (coords, logits)`` holds
  PointRend's importance-sampled training points: ``coords`` ``(B, N, 2)`` as
  ``(x, y)`` in ``[0, 1]`` of the *unpadded* input, ``logits`` ``(B, K, N)``;
  ``model.point_loss(target)`` turns them into PointRend's point loss (an
  engine calls it when the model has it). In eval mode ``last_points`` is None.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from medattn.errors import ConfigError
from medattn.models.base import SegmentationModel
from medattn.models.blocks.swin import SwinTransformerBlock
from medattn.models.encoders import create_encoder, load_state_dict_file
from medattn.models.registry import register_model

PAPER = ("BSANet: medical image denoising and segmentation combining transfer learning and attention "
         "mechanisms, J. Comput. Sci. Softw. Appl. 4(6), 2024")


class ConvBNReLU(nn.Sequential):
    """The paper's convolution block: 3x3 conv (optionally dilated), batch norm, ReLU."""

    def __init__(self, cin: int, cout: int, kernel: int = 3, dilation: int = 1) -> None:
        super().__init__(
            nn.Conv2d(cin, cout, kernel, padding=dilation * (kernel // 2), dilation=dilation, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
        )


class ISAM(nn.Module):
    """Image Space Attention Module: ``f_ISAM = Conv(STB_6(...STB_1(f_0))) + f_0``.

    Six Swin Transformer blocks alternate regular and shifted windows (as a
    Swin stage does), then a 3x3 Conv-BN-ReLU block; the module input is added back.

    Args:
        dim: channels (the Swin blocks' width).
        num_heads: attention heads of every block.
        depth: number of Swin blocks (6 in the paper).
        window_size: attention window side.
        drop_path: stochastic depth, linearly increasing to this value.
    """

    def __init__(self, dim: int, num_heads: int, depth: int = 6, window_size: int = 8,
                 drop_path: float = 0.1) -> None:
        super().__init__()
        dpr = torch.linspace(0, drop_path, depth).tolist()
        self.blocks = nn.Sequential(*(
            SwinTransformerBlock(dim, num_heads, window_size, 0 if i % 2 == 0 else window_size // 2,
                                 drop_path=dpr[i])
            for i in range(depth)
        ))
        self.conv = ConvBNReLU(dim, dim)
        for m in self.blocks.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, f0: torch.Tensor) -> torch.Tensor:
        f6 = self.blocks(f0.permute(0, 2, 3, 1)).permute(0, 3, 1, 2).contiguous()
        return self.conv(f6) + f0


class FSAM(nn.Module):
    """Feature Space Attention Module (channel attention over two receptive fields).

    ``alpha = sigma(H_FC(GAP(DConv(Conv(f)))) + H_FC(GMP(DConv(Conv(f)))))``,
    ``f' = alpha * f``, ``f_o = f' + Conv(f')``. The paper says FSAM "reduces
    the dimension of the feature map": with ``out_channels < in_channels`` the
    last Conv reduces it and the residual ``f'`` goes through a 1x1 projection.

    Args:
        in_channels: channels of ``f``.
        out_channels: channels of ``f_o``.
        reduction: bottleneck ratio of the shared FC stack.
    """

    def __init__(self, in_channels: int, out_channels: int, reduction: int = 16) -> None:
        super().__init__()
        self.conv = ConvBNReLU(in_channels, out_channels)
        self.dconv = ConvBNReLU(out_channels, out_channels, dilation=2)
        hidden = max(out_channels // reduction, 4)
        self.fc = nn.Sequential(nn.Linear(out_channels, hidden), nn.ReLU(inplace=True),
                                nn.Linear(hidden, in_channels))
        self.out_conv = ConvBNReLU(in_channels, out_channels)
        self.shortcut: nn.Module = (nn.Identity() if in_channels == out_channels else
                                    nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, bias=False),
                                                  nn.BatchNorm2d(out_channels)))

    def attention(self, f: torch.Tensor) -> torch.Tensor:
        """The feature space attention map ``alpha`` ``(B, C_in, 1, 1)``."""
        d = self.dconv(self.conv(f))
        f_gap = self.fc(d.mean(dim=(2, 3)))
        f_gmp = self.fc(d.amax(dim=(2, 3)))
        return torch.sigmoid(f_gap + f_gmp)[:, :, None, None]

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        f1 = self.attention(f) * f
        return self.shortcut(f1) + self.out_conv(f1)


class DecoderBlock(nn.Module):
    """Upsample to the skip's size, concatenate the skip, two Conv-BN-ReLU blocks.

    The skip is first reduced to ``cout`` channels by a 1x1 Conv-BN-ReLU (as DeepLabv3+ does
    with low-level features): ResNeXt skips are wide and the 3x3 convs at high resolution
    would otherwise dominate the decoder's cost.
    """

    def __init__(self, cin: int, skip: int, cout: int) -> None:
        super().__init__()
        self.skip = ConvBNReLU(skip, cout, kernel=1)
        self.conv1 = ConvBNReLU(cin + cout, cout)
        self.conv2 = ConvBNReLU(cout, cout)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        return self.conv2(self.conv1(torch.cat([x, self.skip(skip)], dim=1)))


def point_sample(features: torch.Tensor, coords: torch.Tensor, mode: str = "bilinear") -> torch.Tensor:
    """Sample ``(B, C, H, W)`` at ``coords`` ``(B, N, 2)`` (x, y in [0, 1]) -> ``(B, C, N)``."""
    # float32: under bf16 autocast a bf16 grid would put points up to a pixel off at 256x256
    grid = (2.0 * coords.float() - 1.0).unsqueeze(2)
    out = F.grid_sample(features.float(), grid, mode=mode, padding_mode="border", align_corners=False)
    return out.squeeze(3).to(features.dtype)


def uncertainty(logits: torch.Tensor) -> torch.Tensor:
    """PointRend's point uncertainty (higher = less certain): ``-|l|`` for one class,
    ``-(top1 - top2)`` for several. ``(B, K, ...)`` -> ``(B, ...)``."""
    if logits.shape[1] == 1:
        return -logits[:, 0].abs()
    top2 = logits.topk(2, dim=1).values
    return top2[:, 1] - top2[:, 0]


class ARM(nn.Module):
    """Attention Rendering Module: PointRend-style boundary refinement (Kirillov et al., CVPR 2020).

    Inference (and the main output in training): ``steps`` times, upsample the
    current logits x2, pick the ``num_points`` most uncertain locations, and
    replace their logits by a point-head prediction from fine features and
    the coarse logits sampled there. Training also draws PointRend's
    importance-sampled points (``oversample * N`` random candidates, the
    ``importance * N`` most uncertain kept, the rest uniform) whose
    predictions the point loss supervises.

    Args:
        fine_channels: channels of the fine feature maps (concatenated).
        num_classes: logit channels.
        hidden: width of the point head (an MLP of 1x1 Conv1d layers; the coarse
            logits are fed to every layer as in PointRend).
        layers: hidden layers of the point head.
        num_points: points refined per subdivision step.
        train_points: importance-sampled points per image in training.
    """

    def __init__(self, fine_channels: int, num_classes: int, hidden: int = 64, layers: int = 3,
                 num_points: int = 1024, train_points: int = 1024, oversample: int = 3,
                 importance: float = 0.75) -> None:
        super().__init__()
        self.num_points, self.train_points = num_points, train_points
        self.oversample, self.importance = oversample, importance
        fcs, cin = [], fine_channels + num_classes
        for _ in range(layers):
            fcs.append(nn.Conv1d(cin, hidden, 1))
            cin = hidden + num_classes
        self.fcs = nn.ModuleList(fcs)
        self.predictor = nn.Conv1d(cin, num_classes, 1)
        nn.init.normal_(self.predictor.weight, std=0.001)
        nn.init.zeros_(self.predictor.bias)

    def point_head(self, fine: torch.Tensor, coarse: torch.Tensor) -> torch.Tensor:
        """``fine`` ``(B, C, N)``, ``coarse`` ``(B, K, N)`` -> point logits ``(B, K, N)``."""
        x = torch.cat([fine, coarse], dim=1)
        for fc in self.fcs:
            x = torch.cat([F.relu(fc(x)), coarse], dim=1)
        return self.predictor(x)

    def _predict_at(self, fines: Sequence[torch.Tensor], coarse: torch.Tensor,
                    coords: torch.Tensor) -> torch.Tensor:
        fine = torch.cat([point_sample(f, coords) for f in fines], dim=1)
        return self.point_head(fine, point_sample(coarse, coords))

    def render(self, coarse: torch.Tensor, fines: Sequence[torch.Tensor], steps: int) -> torch.Tensor:
        """Subdivision inference: ``steps`` x2 upsamplings, each refining the most uncertain points."""
        logits = coarse
        for _ in range(steps):
            logits = F.interpolate(logits, scale_factor=2.0, mode="bilinear", align_corners=False)
            b, k, h, w = logits.shape
            n = min(self.num_points, h * w)
            idx = uncertainty(logits).reshape(b, h * w).topk(n, dim=1).indices  # (B, N)
            # point centres of the chosen cells in [0, 1], as PointRend's subdivision does
            xs = ((idx % w).float() + 0.5) / w
            ys = (torch.div(idx, w, rounding_mode="floor").float() + 0.5) / h
            point_logits = self._predict_at(fines, coarse, torch.stack([xs, ys], dim=2)).to(logits.dtype)
            logits = logits.reshape(b, k, h * w).scatter(2, idx.unsqueeze(1).expand(-1, k, -1), point_logits)
            logits = logits.reshape(b, k, h, w)
        return logits

    def training_points(self, coarse: torch.Tensor, fines: Sequence[torch.Tensor],
                        extent: tuple[float, float]) -> tuple[torch.Tensor, torch.Tensor]:
        """PointRend's importance sampling inside ``extent`` = (x, y) fraction of the map that is not padding.

        Returns ``coords`` ``(B, N, 2)`` in [0, 1] of the map and their point logits ``(B, K, N)``.
        """
        b, n = coarse.shape[0], self.train_points
        scale = torch.tensor(extent, device=coarse.device)  # float32 coordinates, whatever the logits' dtype
        with torch.no_grad():
            cand = torch.rand(b, n * self.oversample, 2, device=coarse.device) * scale
            n_imp = int(self.importance * n)
            top = uncertainty(point_sample(coarse, cand)).topk(n_imp, dim=1).indices
            coords = torch.gather(cand, 1, top.unsqueeze(2).expand(-1, -1, 2))
            rand = torch.rand(b, n - n_imp, 2, device=coarse.device) * scale
            coords = torch.cat([coords, rand], dim=1)
        return coords, self._predict_at(fines, coarse, coords)


class BSANet(SegmentationModel):
    """Bilateral spatial attention segmentation network (ISAM + FSAM + U-decoder + ARM).

    Args:
        in_channels: image channels (1 or 3).
        num_classes: output channels (1 = binary).
        encoder: registered encoder name (any; the paper uses a ResNeXt).
        encoder_options: extra options of the encoder builder.
        encoder_pretrained: local ImageNet weights file for the encoder.
        isam_stride: encoder stride at which ISAM runs; deeper levels are
            upsampled and concatenated into its input ("deepest two" levels).
        isam_dim: ISAM width (the Swin blocks' channels).
        isam_heads: attention heads (head width ``isam_dim / isam_heads``; Swin uses 32).
        isam_depth: number of Swin blocks (6 in the paper).
        window_size: Swin window side (8: a 16x16 map at 256x256 input is 2x2 windows).
        drop_path: ISAM stochastic depth.
        fsam_channels: FSAM output channels.
        decoder_channels: widths of the decoder stages, deepest first (one per skip level
            between ISAM's stride and stride 4; extra entries are ignored).
        arm_points: points the ARM refines per subdivision step.
        arm_train_points: importance-sampled training points per image.
        deep_supervision: training-mode outputs ``[rendered, coarse, decoder..., FSAM]``.
        swin_pretrained: Swin-T weights file (timm or torchvision layout) whose stage
            ``swin_stage`` blocks initialise ISAM (transfer learning, Section 4.1);
            see :func:`load_swin_blocks` for widths and windows that differ.
        swin_stage: Swin stage to take blocks from (2: Swin-T's 6-block stage 3).
        use_isam, use_fsam, use_arm: ablation switches. Without ISAM its input passes
            through unchanged; without FSAM a plain Conv-BN-ReLU maps to ``fsam_channels``;
            without ARM the main output is the coarse logits upsampled bilinearly (and
            ``last_points`` stays None).
    """

    def __init__(self, in_channels: int = 3, num_classes: int = 1, encoder: str = "resnext_lite",
                 encoder_options: dict[str, Any] | None = None, encoder_pretrained: str | None = None,
                 isam_stride: int = 16, isam_dim: int = 160, isam_heads: int = 5, isam_depth: int = 6,
                 window_size: int = 8, drop_path: float = 0.1, fsam_channels: int = 96,
                 decoder_channels: Sequence[int] = (64, 32), arm_points: int = 1024,
                 arm_train_points: int = 1024, deep_supervision: bool = True,
                 swin_pretrained: str | None = None, swin_stage: int = 2, use_isam: bool = True,
                 use_fsam: bool = True, use_arm: bool = True) -> None:
        enc = create_encoder(encoder, in_channels=in_channels, pretrained=encoder_pretrained,
                             **(encoder_options or {}))
        super().__init__(in_channels, num_classes, stride=enc.stride, deep_supervision=deep_supervision)
        self.encoder = enc
        red, chs = list(self.encoder.reductions), list(self.encoder.out_channels)
        # ISAM's level: the deepest one at or above isam_stride's resolution.
        cand = [i for i, r in enumerate(red) if r <= isam_stride]
        self.isam_level = max(cand, key=lambda i: red[i]) if cand else min(range(len(red)), key=lambda i: red[i])
        self.deep_levels = [i for i in range(len(red)) if red[i] > red[self.isam_level]]
        coarse_stride = max(4, min(red))
        self.skip_levels = sorted((i for i in range(len(red)) if coarse_stride <= red[i] < red[self.isam_level]),
                                  key=lambda i: -red[i])
        if len(decoder_channels) < len(self.skip_levels):
            raise ConfigError(f"bsanet: decoder_channels needs {len(self.skip_levels)} entries for encoder "
                              f"{encoder!r}, got {len(decoder_channels)}")
        self.fine_level = min(range(len(red)), key=lambda i: red[i])

        cin = chs[self.isam_level] + sum(chs[i] for i in self.deep_levels)
        self.isam_in = nn.Sequential(nn.Conv2d(cin, isam_dim, 1, bias=False), nn.BatchNorm2d(isam_dim),
                                     nn.ReLU(inplace=True))
        self.isam: nn.Module = ISAM(isam_dim, isam_heads, isam_depth, window_size, drop_path) if use_isam \
            else nn.Identity()
        self.fsam: nn.Module = FSAM(isam_dim, fsam_channels) if use_fsam else ConvBNReLU(isam_dim, fsam_channels)
        blocks, c = [], fsam_channels
        for i, cout in zip(self.skip_levels, decoder_channels, strict=False):
            blocks.append(DecoderBlock(c, chs[i], cout))
            c = cout
        self.decoder = nn.ModuleList(blocks)
        self.coarse_head = nn.Conv2d(c, num_classes, 1)
        self.aux_heads = nn.ModuleList(nn.Conv2d(ch, num_classes, 1)
                                       for ch in [fsam_channels, *decoder_channels[:len(blocks)]][:-1])
        self.arm = ARM(chs[self.fine_level] + c, num_classes, num_points=arm_points,
                       train_points=arm_train_points) if use_arm else None
        coarse_red = red[self.skip_levels[-1]] if self.skip_levels else red[self.isam_level]
        self.arm_steps = coarse_red.bit_length() - 1  # x2 steps from the coarse map to full resolution
        self.last_points: tuple[torch.Tensor, torch.Tensor] | None = None
        self._valid_hw: tuple[int, int] | None = None
        if swin_pretrained:
            if not use_isam:
                raise ConfigError("bsanet: swin_pretrained initialises ISAM, which use_isam=False removes")
            load_swin_blocks(self.isam.blocks, swin_pretrained, stage=swin_stage)

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        self._valid_hw = (int(x.shape[-2]), int(x.shape[-1]))
        return super().forward(x)

    def forward_logits(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
        feats = self.encoder(x)
        f = feats[self.isam_level]
        deep = [F.interpolate(feats[i], size=f.shape[-2:], mode="bilinear", align_corners=False)
                for i in self.deep_levels]
        f0 = self.isam_in(torch.cat([f, *deep], dim=1) if deep else f)
        d = self.fsam(self.isam(f0))
        stages = [d]
        for block, i in zip(self.decoder, self.skip_levels, strict=False):
            d = block(d, feats[i])
            stages.append(d)
        coarse = self.coarse_head(d)
        fines = [feats[self.fine_level], d]
        rendered = self.arm.render(coarse, fines, self.arm_steps) if self.arm is not None else coarse
        if not self.training:
            self.last_points = None
            return rendered
        hp, wp = x.shape[-2:]
        h, w = self._valid_hw or (hp, wp)
        self.last_points = None
        if self.arm is not None:
            coords, point_logits = self.arm.training_points(coarse, fines, (w / wp, h / hp))
            # coordinates of the unpadded image, which is what the engine's target covers
            self.last_points = (coords * coords.new_tensor([wp / w, hp / h]), point_logits)
        deeper = [head(s) for head, s in zip(self.aux_heads, stages[:-1], strict=True)]
        aux = [coarse] if self.arm is not None else []  # without ARM the coarse map is the main output
        aux += reversed(deeper)  # finest first
        return rendered, aux

    def point_loss(self, target: torch.Tensor) -> torch.Tensor:
        """PointRend's point loss on the last training forward's sampled points.

        ``target``: ``(B, 1, H, W)`` mask in [0, 1] for one class (binary cross-entropy on
        the bilinearly sampled mask), or ``(B, H, W)`` / ``(B, 1, H, W)`` class indices
        for several (cross-entropy on the nearest label).
        """
        if self.last_points is None:
            raise RuntimeError("point_loss needs a training-mode forward first")
        coords, logits = self.last_points
        logits = logits.float()  # the loss in fp32 also under bf16 autocast
        if self.num_classes == 1:
            t = target if target.ndim == 4 else target.unsqueeze(1)
            return F.binary_cross_entropy_with_logits(logits, point_sample(t.to(logits.dtype), coords))
        t = target.unsqueeze(1) if target.ndim == 3 else target
        labels = point_sample(t.to(logits.dtype), coords, mode="nearest").squeeze(1).long()
        return F.cross_entropy(logits, labels)


def _select(n_src: int, n_dst: int) -> torch.Tensor:
    """``n_dst`` evenly spaced indices out of ``n_src`` (uniform weight selection)."""
    return torch.linspace(0, n_src - 1, n_dst).round().long()


def resize_bias_table(table: torch.Tensor, window_size: int) -> torch.Tensor:
    """Bicubic resize of a ``((2w-1)**2, heads)`` relative-position table to another window (as timm)."""
    src = math.isqrt(table.shape[0])
    dst = 2 * window_size - 1
    if src == dst:
        return table
    grid = table.T.reshape(1, table.shape[1], src, src)
    grid = F.interpolate(grid, size=(dst, dst), mode="bicubic", align_corners=False)
    return grid.reshape(table.shape[1], dst * dst).T.contiguous()


def select_block_weights(src: dict[str, torch.Tensor], dim: int, num_heads: int,
                         window_size: int) -> dict[str, torch.Tensor]:
    """Map one Swin block's weights (``norm1.weight``, ``attn.qkv.weight``, ...) to a block of
    width ``dim`` / ``num_heads`` / window ``window_size``.

    Same width: copied. Narrower: *weight selection* (Xu et al., "Initializing Models with
    Larger Ones", ICLR 2024): the same evenly spaced residual channels in every tensor,
    evenly spaced heads (and head channels), evenly spaced MLP units. The relative
    position table is resized bicubically when the window differs.
    """
    src_dim = src["norm1.weight"].shape[0]
    src_heads = src["attn.relative_position_bias_table"].shape[1]
    if dim > src_dim or num_heads > src_heads:
        raise ConfigError(f"Swin blocks of width {src_dim} / {src_heads} heads cannot initialise "
                          f"wider ISAM blocks ({dim} / {num_heads} heads)")
    src_hd, hd = src_dim // src_heads, dim // num_heads
    if hd > src_hd:
        raise ConfigError(f"ISAM head width {hd} exceeds the pretrained head width {src_hd}")
    ch = _select(src_dim, dim)
    heads = _select(src_heads, num_heads)
    attn_ch = (heads[:, None] * src_hd + _select(src_hd, hd)[None, :]).reshape(-1)  # attention channels
    qkv_rows = torch.cat([attn_ch + j * src_dim for j in range(3)])
    hidden_src = src["mlp.fc1.weight"].shape[0]
    hidden = _select(hidden_src, hidden_src * dim // src_dim)
    out = {
        "norm1.weight": src["norm1.weight"][ch], "norm1.bias": src["norm1.bias"][ch],
        "attn.qkv.weight": src["attn.qkv.weight"][qkv_rows][:, ch],
        "attn.proj.weight": src["attn.proj.weight"][ch][:, attn_ch], "attn.proj.bias": src["attn.proj.bias"][ch],
        "attn.relative_position_bias_table": resize_bias_table(
            src["attn.relative_position_bias_table"][:, heads], window_size),
        "norm2.weight": src["norm2.weight"][ch], "norm2.bias": src["norm2.bias"][ch],
        "mlp.fc1.weight": src["mlp.fc1.weight"][hidden][:, ch], "mlp.fc1.bias": src["mlp.fc1.bias"][hidden],
        "mlp.fc2.weight": src["mlp.fc2.weight"][ch][:, hidden], "mlp.fc2.bias": src["mlp.fc2.bias"][ch],
    }
    if "attn.qkv.bias" in src:
        out["attn.qkv.bias"] = src["attn.qkv.bias"][qkv_rows]
    return out


def load_swin_blocks(blocks: nn.Sequential, path: str, stage: int = 2) -> None:
    """Initialise ``blocks`` (ISAM's Swin blocks) from stage ``stage`` of a Swin weights file.

    The file may be in timm or torchvision layout (see :mod:`medattn.models.encoders.swin`).
    Raises :class:`ConfigError` when the stage has fewer blocks than ISAM or keys are missing.
    """
    from medattn.models.encoders.swin import remap_swin_state_dict

    sd = remap_swin_state_dict(load_state_dict_file(path))
    prefix = f"layers.{stage}.blocks."
    per_block: dict[int, dict[str, torch.Tensor]] = {}
    for k, v in sd.items():
        if k.startswith(prefix):
            j, rest = k[len(prefix):].split(".", 1)
            per_block.setdefault(int(j), {})[rest] = v
    if len(per_block) < len(blocks):
        raise ConfigError(f"{path}: Swin stage {stage} has {len(per_block)} blocks, ISAM needs {len(blocks)} "
                          "(Swin-T's stage 2 has 6)")
    for j, block in enumerate(blocks):
        need = [k for k in ("norm1.weight", "attn.qkv.weight", "attn.proj.weight", "mlp.fc1.weight",
                            "mlp.fc2.weight", "attn.relative_position_bias_table") if k not in per_block[j]]
        if need:
            raise ConfigError(f"{path}: Swin block {stage}.{j} lacks {', '.join(need)}")
        weights = select_block_weights(per_block[j], block.dim, block.attn.num_heads, block.window_size)
        own = block.state_dict()
        bad = [k for k, v in weights.items() if k not in own or own[k].shape != v.shape]
        if bad:
            raise ConfigError(f"{path}: Swin block {stage}.{j} does not fit ISAM: {', '.join(bad)}")
        block.load_state_dict(weights, strict=False)


_DEFAULTS: dict[str, Any] = {"encoder": "resnext_lite", "isam_dim": 160, "isam_heads": 5, "window_size": 8,
                             "swin_pretrained": None}


@register_model("bsanet", task="segmentation", input_size=(256, 256), paper=PAPER, paper_params=6_360_000,
                default_options=_DEFAULTS)
def bsanet(**kwargs: Any) -> BSANet:
    """BSANet: ResNeXt encoder, ISAM (6 Swin blocks), FSAM, U-decoder, ARM point rendering."""
    return BSANet(**kwargs)


# The ablation rows (docs/results.md, BSANet table): one module switched off each, everything else equal.
@register_model("bsanet_no_isam", task="segmentation", input_size=(256, 256), paper=PAPER,
                default_options={**_DEFAULTS, "use_isam": False})
def bsanet_no_isam(**kwargs: Any) -> BSANet:
    """BSANet ablation without ISAM: the 1x1-projected encoder feature goes straight to FSAM."""
    return BSANet(**kwargs)


@register_model("bsanet_no_fsam", task="segmentation", input_size=(256, 256), paper=PAPER,
                default_options={**_DEFAULTS, "use_fsam": False})
def bsanet_no_fsam(**kwargs: Any) -> BSANet:
    """BSANet ablation without FSAM: a Conv-BN-ReLU in its place."""
    return BSANet(**kwargs)


@register_model("bsanet_no_arm", task="segmentation", input_size=(256, 256), paper=PAPER,
                default_options={**_DEFAULTS, "use_arm": False})
def bsanet_no_arm(**kwargs: Any) -> BSANet:
    """BSANet ablation without ARM: the coarse decoder logits upsampled bilinearly."""
    return BSANet(**kwargs)
