"""Optimisers and learning-rate schedules from the config's ``optim`` / ``schedule`` sections.

Small functions so that other trainers (``medattn pretrain``, LDCT denoising) reuse them::

    opt = build_optimizer(model.parameters(), cfg.optim)
    sched = build_scheduler(opt, cfg.schedule, epochs=100, steps_per_epoch=len(loader))
    ...  # sched.interval is "step" (call sched.step() after each optimiser step) or "epoch"
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch

from medattn.training.config import OptimConfig, ScheduleConfig


def build_optimizer(params: Iterable[Any], cfg: OptimConfig) -> torch.optim.Optimizer:
    """Adam, AdamW or SGD with the config's learning rate, weight decay, betas / momentum.

    ``cfg.fused`` selects the fused Adam/AdamW kernel (all parameters in one call instead of a
    Python loop over them; same update to float rounding).
    """
    params = [p for p in params if getattr(p, "requires_grad", True)]
    fused = {"fused": True} if cfg.fused else {}
    if cfg.name == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay, **fused)
    if cfg.name == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay, **fused)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov,
                           weight_decay=cfg.weight_decay)


def warmup_cosine_factor(step: int, total: int, warmup: int, min_ratio: float) -> float:
    """LR multiplier: linear warm-up from ``1/warmup`` to 1 over ``warmup`` steps, then cosine to ``min_ratio``."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    span = max(1, total - warmup)
    progress = min(1.0, (step - warmup) / span)
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


class Schedule:
    """A torch LR scheduler plus when to step it: ``interval`` is ``"step"``, ``"epoch"`` or ``"none"``.

    ``step(metric)`` forwards the monitored metric to ``ReduceLROnPlateau``.
    """

    def __init__(self, scheduler: Any, interval: str) -> None:
        self.scheduler = scheduler
        self.interval = interval

    def step(self, metric: float | None = None) -> None:
        if self.scheduler is None:
            return
        if isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            if metric is not None:
                self.scheduler.step(metric)
        else:
            self.scheduler.step()

    def state_dict(self) -> dict[str, Any]:
        return self.scheduler.state_dict() if self.scheduler is not None else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.scheduler is not None and state:
            self.scheduler.load_state_dict(state)


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: ScheduleConfig, epochs: int, steps_per_epoch: int,
                    mode: str = "max") -> Schedule:
    """The schedule of ``cfg`` for a run of ``epochs`` x ``steps_per_epoch`` steps.

    ``mode`` (``max`` / ``min``) is the direction of the monitored metric (plateau).
    """
    if cfg.name == "step":
        return Schedule(torch.optim.lr_scheduler.StepLR(optimizer, step_size=cfg.step_size, gamma=cfg.gamma), "epoch")
    if cfg.name == "plateau":
        sched = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode=mode, factor=cfg.factor,
                                                           patience=cfg.patience, min_lr=cfg.min_lr)
        return Schedule(sched, "epoch")
    if cfg.name == "cosine":
        total = max(1, epochs * steps_per_epoch)
        warmup = round(cfg.warmup_epochs * steps_per_epoch)
        base = optimizer.param_groups[0]["lr"]
        ratio = cfg.min_lr / base if base > 0 else 0.0

        def factor(step: int) -> float:
            return warmup_cosine_factor(step, total, warmup, ratio)

        return Schedule(torch.optim.lr_scheduler.LambdaLR(optimizer, factor), "step")
    return Schedule(None, "none")
