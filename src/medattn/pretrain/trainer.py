"""The pretraining loop: unlabeled images -> masked reconstruction -> weights file.

AdamW with a linear warm-up and a cosine decay per step (MAE's recipe),
optional bfloat16 autocast, a rich progress bar, a CSV log, and atomic
writes of the weights (``mae.safetensors`` / ``encoder.safetensors``) and of a
full ``checkpoint.pt`` from which ``resume=True`` continues.
"""

from __future__ import annotations

import csv
import io
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from medattn.data.types import Sample
from medattn.errors import ConfigError, DatasetError, MedattnIOError
from medattn.pretrain.config import PretrainConfig
from medattn.utils.fileio import atomic_path, atomic_write_text

WEIGHTS_NAME = {"mae": "mae.safetensors", "encoder": "encoder.safetensors"}


@dataclass
class PretrainResult:
    """What a run produced."""

    weights: Path
    checkpoint: Path
    epoch_losses: list[float] = field(default_factory=list)
    step_losses: list[float] = field(default_factory=list)
    seconds_per_epoch: list[float] = field(default_factory=list)
    num_images: int = 0


# --------------------------------------------------------------------------- data


def collect_images(cfg: PretrainConfig) -> list[Sample]:
    """All images of the configured sources, masks dropped, duplicates removed, sorted by path."""
    from medattn.data import discover, load_split, pranet_split

    samples: list[Sample] = []
    for folder in cfg.data.folders:
        samples += discover(folder).samples
    for src in cfg.data.splits:
        parts = load_split(src.file)
        if src.subset not in parts:
            raise ConfigError(f"{src.file}: no subset {src.subset!r} (has {', '.join(parts)})")
        samples += parts[src.subset]
    if cfg.data.pranet_train is not None:
        samples += pranet_split(cfg.data.pranet_train)["train"]
    unique = {Path(s.image).resolve(): s for s in samples}
    out = [Sample(id=s.id, image=p, dataset=s.dataset) for p, s in sorted(unique.items())]
    if cfg.data.max_images is not None:
        out = out[: cfg.data.max_images]
    if not out:
        where = ", ".join(map(str, [*cfg.data.folders, *(s.file for s in cfg.data.splits)])) or "the sources"
        raise DatasetError(f"no images found in {where}")
    return out


# --------------------------------------------------------------------------- model


def build_model(cfg: PretrainConfig) -> nn.Module:
    """The MAE, or an encoder wrapped in :class:`~medattn.pretrain.masked.MaskedEncoderModel`."""
    if cfg.kind == "mae":
        from medattn.models.mae import MAE

        opts = {"in_channels": cfg.in_channels, "mask_ratio": cfg.mask_ratio,
                "norm_pix_loss": cfg.norm_pix_loss, "img_size": cfg.input_size[0], **cfg.mae_options}
        if cfg.patch_size is not None:
            opts["patch_size"] = cfg.patch_size
        try:
            return MAE(**opts)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"mae_options: {exc}") from exc
    # importing medattn.models.* registers every encoder, GRCSF's unet_encoder included
    from medattn.models.encoders import create_encoder
    from medattn.pretrain.masked import MaskedEncoderModel

    try:
        enc = create_encoder(cfg.encoder, in_channels=cfg.in_channels, **cfg.encoder_options)
    except TypeError as exc:
        raise ConfigError(f"encoder_options: {exc}") from exc
    patch = cfg.patch_size or enc.stride
    return MaskedEncoderModel(enc, cfg.in_channels, patch, cfg.decoder_dim, cfg.norm_pix_loss)


def _patch_size(model: nn.Module) -> int:
    return int(model.patch_size)


def _loss(model: nn.Module, imgs: torch.Tensor, cfg: PretrainConfig, gen: torch.Generator) -> torch.Tensor:
    return model(imgs, cfg.mask_ratio, gen)[0]


def weights_of(model: nn.Module, cfg: PretrainConfig) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The tensors to publish and their safetensors metadata."""
    if cfg.kind == "mae":
        sd = model.state_dict()
        meta = {"format": "medattn-mae", "mae_options": json.dumps(model.options)}
    else:
        sd = model.encoder.state_dict()
        meta = {"format": "medattn-encoder", "encoder": cfg.encoder,
                "encoder_options": json.dumps(cfg.encoder_options), "in_channels": str(cfg.in_channels)}
    return {k: v.detach().cpu().contiguous() for k, v in sd.items()}, meta


def save_weights(path: Path, model: nn.Module, cfg: PretrainConfig) -> Path:
    """Write the published weights atomically as safetensors."""
    from safetensors.torch import save_file

    sd, meta = weights_of(model, cfg)
    # tied or shared storage is not allowed by safetensors; clone every tensor
    sd = {k: v.clone() for k, v in sd.items()}
    with atomic_path(path) as tmp:
        save_file(sd, str(tmp), metadata=meta)
    return path


def snapshot_path(weights: Path, epoch: int) -> Path:
    """Where the weights after ``epoch`` are kept (``snapshot_epochs``): ``mae_epoch8.safetensors``."""
    return weights.with_name(f"{weights.stem}_epoch{epoch}{weights.suffix}")


# --------------------------------------------------------------------------- schedule


def lr_factor(step: int, total: int, warmup: int, lr: float, min_lr: float) -> float:
    """Multiplier of ``lr`` at ``step``: linear warm-up, then half-cosine down to ``min_lr``."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    t = (step - warmup) / max(1, total - warmup)
    cos = 0.5 * (1.0 + math.cos(math.pi * min(1.0, t)))
    return (min_lr + (lr - min_lr) * cos) / lr


def _param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    # no decay on norms, biases, tokens (1-D or scalar-like parameters), as in MAE
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim <= 1 or name.endswith("mask_token") else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _device(cfg: PretrainConfig) -> torch.device:
    if cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise ConfigError("device: cuda requested but no CUDA device is available")
        return torch.device("cuda")
    return torch.device("cpu")


# --------------------------------------------------------------------------- loop


def run_pretraining(cfg: PretrainConfig, resume: bool = False, progress: bool = True) -> PretrainResult:
    """Pretrain as configured; returns the weights path and the loss history."""
    from torch.utils.data import DataLoader

    from medattn.data import UnlabeledDataset

    torch.manual_seed(cfg.seed)
    device = _device(cfg)
    samples = collect_images(cfg)
    model = build_model(cfg).to(device)
    p = _patch_size(model)
    h, w = cfg.input_size
    if h % p or w % p:
        raise ConfigError(f"input_size {h}x{w} must be a multiple of the masking patch size {p}")

    dataset = UnlabeledDataset(samples, size=(h, w), in_channels=cfg.in_channels, cache=cfg.data.cache)
    loader_gen = torch.Generator().manual_seed(cfg.seed)
    loader = DataLoader(dataset, batch_size=min(cfg.batch_size, len(dataset)), shuffle=True, drop_last=True,
                        num_workers=cfg.num_workers, generator=loader_gen,
                        persistent_workers=cfg.num_workers > 0)
    steps_per_epoch = len(loader) if cfg.max_steps_per_epoch is None else min(len(loader), cfg.max_steps_per_epoch)
    total = steps_per_epoch * cfg.epochs
    warmup = round(cfg.warmup_epochs * steps_per_epoch)

    opt = torch.optim.AdamW(_param_groups(model, cfg.weight_decay), lr=cfg.lr, betas=cfg.betas)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: lr_factor(s, total, warmup, cfg.lr, cfg.min_lr))
    mask_gen = torch.Generator().manual_seed(cfg.seed + 1)
    flip_gen = torch.Generator().manual_seed(cfg.seed + 2)

    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ckpt_path, weights_path, log_path = out / "checkpoint.pt", out / WEIGHTS_NAME[cfg.kind], out / "log.csv"
    result = PretrainResult(weights=weights_path, checkpoint=ckpt_path, num_images=len(dataset))
    start_epoch = 0
    if resume and ckpt_path.exists():
        start_epoch = _load_checkpoint(ckpt_path, model, opt, sched, loader_gen, mask_gen, flip_gen, result)
    atomic_write_text(out / "config.yaml", cfg.to_yaml())

    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.bf16)
    bar = _progress(progress)
    with bar:
        task = bar.add_task(f"pretrain {cfg.kind}", total=total, completed=start_epoch * steps_per_epoch,
                            loss=float("nan"))
        for epoch in range(start_epoch, cfg.epochs):
            model.train()
            t0, running, n = time.perf_counter(), 0.0, 0
            for step, batch in enumerate(loader):
                if step >= steps_per_epoch:
                    break
                imgs = batch["image"].to(device, non_blocking=True)
                if cfg.data.flip:
                    imgs = _random_flips(imgs, flip_gen)
                with autocast:
                    loss = _loss(model, imgs, cfg, mask_gen)
                if not torch.isfinite(loss):
                    raise ConfigError(f"loss became {loss.item()} at epoch {epoch + 1}; lower lr or disable bf16")
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                running += loss.item()
                n += 1
                result.step_losses.append(loss.item())
                bar.update(task, advance=1, loss=running / n)
            seconds = time.perf_counter() - t0
            result.epoch_losses.append(running / max(n, 1))
            result.seconds_per_epoch.append(seconds)
            _append_log(log_path, epoch + 1, running / max(n, 1), opt.param_groups[0]["lr"], seconds,
                        fresh=epoch == 0)
            if epoch + 1 in cfg.snapshot_epochs:
                save_weights(snapshot_path(weights_path, epoch + 1), model, cfg)
            if (epoch + 1) % cfg.save_every == 0 or epoch + 1 == cfg.epochs:
                save_weights(weights_path, model, cfg)
                _save_checkpoint(ckpt_path, model, opt, sched, epoch + 1, cfg, loader_gen, mask_gen, flip_gen,
                                 result)
    return result


def _random_flips(imgs: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    flips = torch.rand(imgs.shape[0], 2, generator=gen) < 0.5
    h = flips[:, 0].to(imgs.device).view(-1, 1, 1, 1)
    v = flips[:, 1].to(imgs.device).view(-1, 1, 1, 1)
    imgs = torch.where(h, imgs.flip(-1), imgs)
    return torch.where(v, imgs.flip(-2), imgs)


def _progress(enabled: bool):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("loss {task.fields[loss]:.4f}"), TimeRemainingColumn(), disable=not enabled)


def _append_log(path: Path, epoch: int, loss: float, lr: float, seconds: float, fresh: bool) -> None:
    rows = []
    if path.exists() and not fresh:
        rows = list(csv.reader(io.StringIO(path.read_text(encoding="utf-8"))))[1:]
        rows = [r for r in rows if r and int(r[0]) < epoch]
    rows.append([str(epoch), f"{loss:.6f}", f"{lr:.3e}", f"{seconds:.2f}"])
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["epoch", "loss", "lr", "seconds"])
    writer.writerows(rows)
    atomic_write_text(path, buf.getvalue())


def _save_checkpoint(path: Path, model: nn.Module, opt: torch.optim.Optimizer, sched: Any, epoch: int,
                     cfg: PretrainConfig, loader_gen: torch.Generator, mask_gen: torch.Generator,
                     flip_gen: torch.Generator, result: PretrainResult) -> None:
    state = {
        "epoch": epoch, "model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
        "config": cfg.model_dump(mode="json"), "rng": [g.get_state() for g in (loader_gen, mask_gen, flip_gen)],
        "epoch_losses": result.epoch_losses, "seconds_per_epoch": result.seconds_per_epoch,
    }
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def _load_checkpoint(path: Path, model: nn.Module, opt: torch.optim.Optimizer, sched: Any,
                     loader_gen: torch.Generator, mask_gen: torch.Generator, flip_gen: torch.Generator,
                     result: PretrainResult) -> int:
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
    except (KeyError, RuntimeError, ValueError, OSError) as exc:
        raise MedattnIOError(path, f"cannot resume from this checkpoint ({exc})") from None
    for g, s in zip((loader_gen, mask_gen, flip_gen), state["rng"], strict=True):
        g.set_state(s)
    result.epoch_losses = list(state["epoch_losses"])
    result.seconds_per_epoch = list(state["seconds_per_epoch"])
    return int(state["epoch"])
