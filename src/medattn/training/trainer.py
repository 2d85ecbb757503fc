"""The training loop behind ``medattn train``.

One :class:`Trainer` serves every registered model: segmentation networks (with
deep-supervision lists and BSANet's ``point_loss``) and, through a dataset builder
whose items carry a ``target``, image-to-image models (LDCT denoising).

Reproducibility: at the start of every epoch the Python, NumPy and torch RNGs, the
sampler (``DistributedSampler.set_epoch``), the loader's generator and the
augmentation pipeline are reseeded from ``(seed, epoch, rank)``. An epoch therefore
depends only on the weights and optimiser state it starts from, which is why
``--resume`` reproduces an uninterrupted run exactly. The sampler is always a
``DistributedSampler`` (a world of one without torchrun) and ``train.batch_size`` is
the *global* batch, so 1 and N processes see the same batches.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import random
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from medattn.errors import ConfigError, MedattnIOError
from medattn.training import distributed as D
from medattn.training.batch import resize_batch, scaled_size, stage_size
from medattn.training.checkpoint import (
    STATE_FILE,
    load_state,
    rng_state,
    save_checkpoint,
    save_state,
    set_rng_state,
    unwrap,
)
from medattn.training.config import Config, data_modality, save_config
from medattn.training.data import DataBundle, get_dataset_builder
from medattn.training.ema import ModelEMA
from medattn.training.optim import build_optimizer, build_scheduler
from medattn.utils.fileio import atomic_path, atomic_write_text

_LOWER_IS_BETTER = ("loss", "mse", "mae", "rmse", "hd95", "assd")


@dataclass
class TrainResult:
    """Summary of a finished (or paused) run."""

    run_dir: Path
    history: list[dict[str, Any]] = field(default_factory=list)
    monitor: str = "val_dice"
    best: float | None = None
    best_epoch: int | None = None
    epochs_done: int = 0
    stopped_early: bool = False
    paused: bool = False


def default_run_dir(cfg: Config) -> Path:
    """``cfg.out_dir`` or ``runs/<name>`` under the current folder."""
    return cfg.out_dir if cfg.out_dir is not None else Path("runs") / (cfg.name or "run")


def monitor_mode(name: str) -> str:
    """``min`` for losses and errors, ``max`` for scores."""
    return "min" if name.endswith(_LOWER_IS_BETTER) else "max"


def _epoch_seed(seed: int, epoch: int, rank: int = 0) -> int:
    return (seed * 1_000_003 + epoch * 9_973 + rank * 101) % (2**31)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def use_channels_last(model: nn.Module, setting: bool | str) -> bool:
    """Whether ``train.channels_last`` (``True``, ``False`` or ``"auto"``) applies to ``model``.

    ``auto`` skips models with ``GroupNorm``: measured on CPU (benchmarks/train_speed.py), its
    backward in channels-last format made an HLF-Net step twice as slow, more than the
    convolutions gain.
    """
    if setting == "auto":
        return not any(isinstance(m, nn.GroupNorm) for m in model.modules())
    return bool(setting)


# --------------------------------------------------------------------------- validation metrics


def segmentation_scores(logits: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-image Dice and IoU of the thresholded prediction (sigmoid > 0.5, or argmax).

    Both empty counts as a perfect score (1). Several classes: mean over foreground classes.
    """
    logits = logits.float()
    if logits.shape[1] == 1:
        pred = (logits > 0).float()  # sigmoid(x) > 0.5
        gt = (target > 0.5).float()
    else:
        classes = logits.shape[1]
        pred = nn.functional.one_hot(logits.argmax(1), classes).permute(0, 3, 1, 2)[:, 1:].float()
        labels = target[:, 0].long() if target.shape[1] == 1 else target.argmax(1)
        gt = nn.functional.one_hot(labels, classes).permute(0, 3, 1, 2)[:, 1:].float()
    inter = (pred * gt).sum(dim=(2, 3))
    total = pred.sum(dim=(2, 3)) + gt.sum(dim=(2, 3))
    union = total - inter
    dice = torch.where(total > 0, 2 * inter / total.clamp_min(1e-12), torch.ones_like(total))
    iou = torch.where(union > 0, inter / union.clamp_min(1e-12), torch.ones_like(union))
    return {"dice": dice.mean(1), "iou": iou.mean(1)}


def restoration_scores(output: torch.Tensor, target: torch.Tensor, data_range: float = 1.0) -> dict[str, torch.Tensor]:
    """Per-image PSNR (dB, for ``data_range``) and MSE."""
    mse = ((output.float() - target.float()) ** 2).flatten(1).mean(1)
    psnr = 10 * torch.log10(data_range**2 / mse.clamp_min(1e-12))
    return {"psnr": psnr, "mse": mse}


# --------------------------------------------------------------------------- logs


def write_history(run_dir: Path, history: list[dict[str, Any]]) -> None:
    """``history.json`` and ``history.csv`` (one row per epoch), atomically."""
    atomic_write_text(run_dir / "history.json", json.dumps(history, indent=1) + "\n")
    keys: list[str] = []
    for row in history:
        keys += [k for k in row if k not in keys]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=keys, lineterminator="\n")
    writer.writeheader()
    writer.writerows(history)
    atomic_write_text(run_dir / "history.csv", buf.getvalue())


def plot_curves(run_dir: Path, history: list[dict[str, Any]]) -> Path | None:
    """``curves.png``: losses (left) and validation scores (right) per epoch."""
    if not history:
        return None
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib import pyplot as plt

    epochs = [row["epoch"] for row in history]
    fig, (ax_l, ax_m) = plt.subplots(1, 2, figsize=(10, 4))
    for key in ("train_loss", "val_loss"):
        pts = [(e, row[key]) for e, row in zip(epochs, history, strict=True) if row.get(key) is not None]
        if pts:
            ax_l.plot(*zip(*pts, strict=True), marker="o", label=key)
    ax_l.set(xlabel="epoch", ylabel="loss", title="loss")
    ax_l.legend()
    scores = [k for k in history[-1] if k.startswith("val_") and k != "val_loss"]
    for key in scores:
        pts = [(e, row[key]) for e, row in zip(epochs, history, strict=True) if row.get(key) is not None]
        if pts:
            ax_m.plot(*zip(*pts, strict=True), marker="o", label=key)
    ax_m.set(xlabel="epoch", title="validation")
    if scores:
        ax_m.legend()
    fig.tight_layout()
    target = run_dir / "curves.png"
    with atomic_path(target) as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)
    return target


# --------------------------------------------------------------------------- trainer


class Trainer:
    """Train ``cfg.model`` on ``cfg.data`` into ``run_dir``.

    Args:
        cfg: the validated configuration.
        run_dir: output folder (default :func:`default_run_dir`).
        resume: continue the run in ``run_dir`` from its ``state.pt``.
        progress: show the rich progress bar (rank 0 only).

    Hooks for subclasses (nnU-Net style): :meth:`build_model`, :meth:`build_loss`,
    :meth:`compute_loss`, :meth:`scores`.
    """

    def __init__(self, cfg: Config, run_dir: str | os.PathLike[str] | None = None, resume: bool = False,
                 progress: bool = True) -> None:
        self.cfg = cfg
        self.run_dir = Path(run_dir) if run_dir is not None else default_run_dir(cfg)
        self.resume = resume
        self.progress = progress
        #: per-sample validation scores of the data bundle (None: the task's defaults); set by fit()
        self.bundle_scores: Any = None
        #: whether the model and batches are channels-last (train.channels_last resolved); set by fit()
        self.channels_last = False

    # ---- hooks
    def build_model(self) -> tuple[nn.Module, dict[str, Any], str]:
        """The network, the builder options that rebuild it, and its registry task."""
        from medattn.models import create, model_info

        info = model_info(self.cfg.model.name)
        options = {**info.default_options, **self.cfg.model.options}
        if info.task == "segmentation":
            options.setdefault("in_channels", self.cfg.data.in_channels)
            options.setdefault("num_classes", self.cfg.model.num_classes)
        model = create(self.cfg.model.name, **options)
        return model, options, info.task

    def build_loss(self) -> nn.Module:
        from medattn.losses import DeepSupervisionLoss, build_loss

        lc = self.cfg.loss
        return DeepSupervisionLoss(build_loss(lc.name, **lc.options), lc.aux_weights, lc.normalize_aux)

    def compute_loss(self, model: nn.Module, outputs: Any, target: torch.Tensor) -> torch.Tensor:
        """Loss of one batch in fp32; adds ``point_loss(target)`` for models that define it (BSANet)."""
        if isinstance(outputs, (list, tuple)):
            outputs = [o.float() for o in outputs]
        else:
            outputs = outputs.float()
        loss = self.loss_fn(outputs, target)
        inner = unwrap(model)
        weight = self.cfg.loss.point_loss_weight
        if weight and callable(getattr(inner, "point_loss", None)) and getattr(inner, "last_points", 1) is not None:
            loss = loss + weight * inner.point_loss(target).float()
        return loss

    def scores(self, outputs: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per-sample validation scores (``val_`` is prefixed): the data bundle's, else the task's."""
        if self.bundle_scores is not None:
            return self.bundle_scores(outputs, target)
        if self.task == "segmentation":
            return segmentation_scores(outputs, target)
        return restoration_scores(outputs, target)

    # ---- helpers
    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.cfg.train.precision == "bf16":
            return torch.autocast(self.dist.device.split(":")[0], dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _loader(self, dataset: Any, batch: int, train: bool) -> torch.utils.data.DataLoader:
        from torch.utils.data import DataLoader, DistributedSampler

        from medattn.data import worker_init_fn

        if train:
            sampler = DistributedSampler(dataset, num_replicas=self.dist.world_size, rank=self.dist.rank,
                                         shuffle=True, seed=self.cfg.train.seed, drop_last=self.cfg.train.drop_last)
        else:
            sampler = D.ShardSampler(len(dataset), self.dist.rank, self.dist.world_size)
        generator = None
        if train:  # only the training loader draws worker seeds; _seed_epoch reseeds it
            generator = self.generator = torch.Generator()
            generator.manual_seed(self.cfg.train.seed)
        return DataLoader(dataset, batch_size=batch, sampler=sampler, num_workers=self.cfg.data.workers,
                          worker_init_fn=worker_init_fn if self.cfg.data.workers else None,
                          generator=generator, drop_last=train and self.cfg.train.drop_last,
                          pin_memory=self.dist.device.startswith("cuda"))

    def _batch(self, batch: dict[str, Any], target_key: str, size: tuple[int, int],
               soft_target: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """Image and target of one training batch on the device, at this step's size and memory format.

        ``size`` is the epoch's (progressive resizing); ``train.multi_scale`` rescales it by a factor
        drawn (Python ``random``, reseeded every epoch) for this step.
        """
        tc = self.cfg.train
        x = batch["image"].to(self.dist.device, non_blocking=True)
        y = batch[target_key].to(self.dist.device, non_blocking=True)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        if tc.multi_scale:
            size = scaled_size(size, random.choice(tc.multi_scale))
        return resize_batch(x, y, size, soft_target=soft_target)

    @staticmethod
    def _check_loss(loss_sum: torch.Tensor, epoch: int, first: int, step: int) -> float:
        """Mean training loss so far; an error naming the steps if a loss since the last check was not finite."""
        total, count = loss_sum.tolist()
        if not math.isfinite(total):
            raise ConfigError(f"epoch {epoch + 1}, steps {first + 1}-{step + 1}: the loss is {total}; "
                              "lower optim.lr or use precision fp32")
        return total / count

    def _seed_epoch(self, epoch: int, dataset: Any, sampler: Any) -> None:
        s = _epoch_seed(self.cfg.train.seed, epoch, self.dist.rank)
        seed_everything(s)
        self.generator.manual_seed(s)  # worker seeds (and their augmentation) follow the epoch too
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)
        if hasattr(dataset, "set_random_state"):
            dataset.set_random_state(s)

    def _prepare_run_dir(self) -> None:
        state = self.run_dir / STATE_FILE
        if not self.resume and state.exists():
            raise ConfigError(f"{self.run_dir}: already holds a run; continue it with `medattn train --resume "
                              f"{self.run_dir}` or choose another --out")
        if self.dist.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)

    # ---- the loop
    def fit(self, stop_after: int | None = None) -> TrainResult:
        """Train; ``stop_after`` ends this call after that many epochs (resumable, like a job time limit)."""
        self.dist = D.setup(self.cfg.train.device)
        # deterministic mode is process-global: restore the caller's setting afterwards
        previous = (torch.are_deterministic_algorithms_enabled(),
                    torch.is_deterministic_algorithms_warn_only_enabled())
        try:
            return self._fit(stop_after)
        finally:
            torch.use_deterministic_algorithms(previous[0], warn_only=previous[1])
            D.cleanup(self.dist)

    def _fit(self, stop_after: int | None) -> TrainResult:
        cfg, tc, dist = self.cfg, self.cfg.train, self.dist
        if tc.batch_size % dist.world_size:
            raise ConfigError(f"train.batch_size={tc.batch_size} is not divisible by the {dist.world_size} "
                              "processes (it is the global batch)")
        self._prepare_run_dir()
        if tc.deterministic:
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            torch.use_deterministic_algorithms(True, warn_only=True)
        seed_everything(tc.seed)
        if cfg.model.init is not None and not self.resume:  # fail before the (possibly slow) data building
            from medattn.models.hub import load_weights_into, resolve_weights

            try:
                resolve_weights(cfg.model.init)
            except (MedattnIOError, ConfigError) as exc:
                raise ConfigError(f"model.init: {exc}") from None

        bundle: DataBundle = get_dataset_builder(cfg.data.kind)(cfg)
        self.bundle_scores = bundle.scores
        model, options, self.task = self.build_model()
        if cfg.model.init is not None and not self.resume:  # a resumed run continues from state.pt instead
            load_weights_into(model, cfg.model.init, cfg.model.name)
        n_params = sum(p.numel() for p in model.parameters())
        model.to(dist.device)
        self.channels_last = use_channels_last(model, tc.channels_last)
        if self.channels_last:
            model.to(memory_format=torch.channels_last)
        ema = ModelEMA(model, tc.ema) if tc.ema is not None else None
        self.loss_fn = self.build_loss()
        train_loader = self._loader(bundle.train, tc.batch_size // dist.world_size, train=True)
        val_batch = bundle.val_batch_size or tc.batch_size // dist.world_size
        val_loader = self._loader(bundle.val, val_batch, train=False) if bundle.val else None
        steps = len(train_loader) if tc.max_steps_per_epoch is None else min(len(train_loader), tc.max_steps_per_epoch)
        if steps == 0:
            raise ConfigError(f"no training batches: {len(bundle.train)} samples, batch {tc.batch_size}"
                              + (" with drop_last" if tc.drop_last else ""))
        default_monitor = "val_dice" if self.task == "segmentation" else "val_psnr"
        monitor = tc.monitor or (default_monitor if val_loader is not None else "train_loss")
        mode = monitor_mode(monitor)
        optimizer = build_optimizer(model.parameters(), cfg.optim)
        schedule = build_scheduler(optimizer, cfg.schedule, tc.epochs, steps, mode=mode)

        start, best, best_epoch, bad, history = 0, None, None, 0, []
        started = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        if self.resume:
            state = load_state(self.run_dir / STATE_FILE)
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            schedule.load_state_dict(state["scheduler"])
            start, best, best_epoch, bad = state["epoch"], state["best"], state["best_epoch"], state["bad_epochs"]
            history, started = list(state["history"]), state["started"]
            set_rng_state(state["rng"])
            if ema is not None:
                if "ema" in state:
                    ema.load_state_dict(state["ema"])
                else:  # EMA switched on when resuming: start the average from the current weights
                    ema = ModelEMA(model, tc.ema)
        if dist.distributed:
            from torch.nn.parallel import DistributedDataParallel

            ids = [dist.local_rank] if dist.device.startswith("cuda") else None
            model = DistributedDataParallel(model, device_ids=ids)
        forward = torch.compile(model) if tc.compile else model
        if dist.is_main:
            save_config(cfg, self.run_dir / "config.yaml")
            if bundle.split and not self.resume:
                from medattn.data import save_split

                save_split(self.run_dir / "split.json", bundle.split,
                           meta={"protocol": cfg.data.split.kind, "seed": cfg.data.split.seed})

        version = f"{cfg.name}@{started}"
        result = TrainResult(run_dir=self.run_dir, history=history, monitor=monitor, best=best, best_epoch=best_epoch,
                             epochs_done=start)

        # the size the items come at when the data set fixes it (LDCT patches: their pixel size is the
        # simulated grid), else data.input_size: the cards record it, progressive stages and
        # multi-scale factors apply to it
        input_size = tuple(bundle.input_size or cfg.data.input_size)
        extra = {"params": n_params, **bundle.card}
        modality = data_modality(cfg)
        if modality:
            extra.setdefault("modality", modality)
        if cfg.model.init is not None:
            extra["init"] = cfg.model.init
        if self.task == "segmentation":  # how the model is meant to be run (medattn.inference.loading)
            extra["inference"] = {**extra.get("inference", {}), "input_size": list(input_size),
                                  **cfg.inference.model_dump()}

        def card_kwargs(epoch: int, metrics: dict[str, Any]) -> dict[str, Any]:
            return {"name": cfg.model.name, "options": options, "task": self.task,
                    "input_size": input_size, "epoch": epoch, "metrics": metrics,
                    "config": cfg.dump(), "version": version, "extra": extra}

        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("loss {task.fields[loss]}  {task.fields[metric]}"), TimeElapsedColumn(),
                   TextColumn("ETA"), TimeRemainingColumn())
        bar = Progress(*columns, console=Console(stderr=True), disable=not (self.progress and dist.is_main))
        ran = 0
        # a multi-class label map is resized nearest; masks and images (denoising targets) bilinearly
        soft_target = not (self.task == "segmentation" and cfg.model.num_classes > 1)
        # validation and checkpoints use the weight average when there is one
        evaluated = ema.module if ema is not None else model
        with bar:
            task = bar.add_task("train", total=(tc.epochs - start) * steps, loss="-", metric="")
            for epoch in range(start, tc.epochs):
                t0 = time.perf_counter()
                self._seed_epoch(epoch, bundle.train, train_loader.sampler)
                model.train()
                size = stage_size(tc.progressive, epoch, input_size)
                # summed on the device and read back every log_interval steps: no host sync per step
                loss_sum = torch.zeros(2, dtype=torch.float64, device=dist.device)
                checked = 0
                for step, batch in enumerate(train_loader):
                    if step >= steps:
                        break
                    x, y = self._batch(batch, bundle.target_key, size, soft_target)
                    with self._autocast():
                        out = forward(x)
                    loss = self.compute_loss(model, out, y)
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    if tc.grad_clip is not None:
                        nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
                    optimizer.step()
                    if schedule.interval == "step":
                        schedule.step()
                    if ema is not None:
                        ema.update(unwrap(model))
                    loss_sum[0] += loss.detach().double() * x.shape[0]
                    loss_sum[1] += x.shape[0]
                    if (step + 1) % tc.log_interval == 0 or step + 1 == steps:
                        mean = self._check_loss(loss_sum, epoch, checked, step)
                        checked = step + 1
                        bar.update(task, description=f"epoch {epoch + 1}/{tc.epochs}", loss=f"{mean:.4f}")
                    bar.update(task, advance=1)
                loss_sum = loss_sum.cpu()
                D.all_reduce_sum(loss_sum, dist)
                row: dict[str, Any] = {"epoch": epoch + 1, "lr": optimizer.param_groups[0]["lr"],
                                       "train_loss": float(loss_sum[0] / loss_sum[1])}
                validated = val_loader is not None and ((epoch + 1) % tc.val_interval == 0 or epoch + 1 == tc.epochs)
                if validated:
                    row.update(self.validate(evaluated, val_loader, bundle.target_key))
                row["seconds"] = round(time.perf_counter() - t0, 3)
                if schedule.interval == "epoch":
                    schedule.step(row.get(monitor))
                history.append(row)
                ran += 1

                value = row.get(monitor)
                improved = False
                if value is not None:
                    if best is None or (value > best + tc.min_delta if mode == "max" else value < best - tc.min_delta):
                        best, best_epoch, bad, improved = float(value), epoch + 1, 0, True
                    else:
                        bad += 1
                stop_early = tc.early_stopping is not None and bad >= tc.early_stopping
                final = epoch + 1 == tc.epochs or stop_early or (stop_after is not None and ran >= stop_after)
                metrics = {k: v for k, v in row.items() if k != "epoch"}
                if dist.is_main:
                    if improved:
                        save_checkpoint(self.run_dir, "best", evaluated, **card_kwargs(epoch + 1, metrics))
                    if (epoch + 1) % tc.checkpoint_interval == 0 or final:
                        save_checkpoint(self.run_dir, "last", evaluated, **card_kwargs(epoch + 1, metrics))
                        save_state(self.run_dir / STATE_FILE, {
                            "model": unwrap(model).state_dict(), "optimizer": optimizer.state_dict(),
                            "scheduler": schedule.state_dict(), "epoch": epoch + 1, "best": best,
                            "best_epoch": best_epoch, "bad_epochs": bad, "history": history,
                            "started": started, "monitor": monitor, "rng": rng_state(),
                            **({"ema": ema.state_dict()} if ema is not None else {}),
                        })
                    write_history(self.run_dir, history)
                shown = f"{monitor} {value:.4f}" if value is not None else ""
                bar.update(task, metric=shown)
                D.barrier(dist)
                result.epochs_done = epoch + 1
                if stop_early:
                    result.stopped_early = True
                    break
                if stop_after is not None and ran >= stop_after and epoch + 1 < tc.epochs:
                    result.paused = True
                    break
        result.best, result.best_epoch, result.history = best, best_epoch, history
        if dist.is_main and tc.curves and not result.paused:
            plot_curves(self.run_dir, history)
        return result

    @torch.no_grad()
    def validate(self, model: nn.Module, loader: Any, target_key: str) -> dict[str, float]:
        """Mean validation loss and scores over the whole validation set (summed over processes)."""
        model.eval()
        sums: dict[str, torch.Tensor] = {}
        for batch in loader:
            x = batch["image"].to(self.dist.device)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            y = batch[target_key].to(self.dist.device)
            with self._autocast():
                out = model(x)
            out = out.float()
            n = x.shape[0]
            values = {"loss": self.loss_fn(out, y).detach().double() * n}
            values.update({k: v.double().sum() for k, v in self.scores(out, y).items()})
            for k, v in values.items():
                sums[k] = sums.get(k, torch.zeros((), dtype=torch.float64)) + v.cpu()
            sums["n"] = sums.get("n", torch.zeros((), dtype=torch.float64)) + n
        keys = sorted(k for k in sums if k != "n") if sums else ["loss"]
        packed = torch.stack([sums.get(k, torch.zeros((), dtype=torch.float64)) for k in [*keys, "n"]])
        D.all_reduce_sum(packed, self.dist)
        count = packed[-1].item()
        return {f"val_{k}": (packed[i].item() / count if count else math.nan) for i, k in enumerate(keys)}


def train(cfg: Config, run_dir: str | os.PathLike[str] | None = None, resume: bool = False,
          progress: bool = True, stop_after: int | None = None) -> TrainResult:
    """Train ``cfg`` (see :class:`Trainer`)."""
    return Trainer(cfg, run_dir=run_dir, resume=resume, progress=progress).fit(stop_after=stop_after)
