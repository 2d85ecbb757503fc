"""Exponential moving average of a model's weights (``train.ema``).

After every optimiser step ``ema = d * ema + (1 - d) * weights`` with the effective decay
``d = min(decay, (1 + n) / (10 + n))`` after ``n`` updates (the TensorFlow / timm warm-up, so that
a short run is not dominated by the random initial weights). Floating-point buffers (batch-norm
running statistics) are averaged the same way; integer buffers (``num_batches_tracked``) are
copied. The trainer validates and checkpoints :attr:`ModelEMA.module`.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn


class ModelEMA:
    """An averaged copy of ``model`` (kept in eval mode, no gradients).

    >>> ema = ModelEMA(model, decay=0.999)  # doctest: +SKIP
    >>> ...; optimizer.step(); ema.update(model)  # doctest: +SKIP
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay {decay} must lie in (0, 1)")
        self.decay = decay
        self.updates = 0
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)

    def _pairs(self, model: nn.Module) -> tuple[list[torch.Tensor], list[torch.Tensor], list[tuple[Any, Any]]]:
        mine = dict(self.module.state_dict(keep_vars=True))
        avg, cur, copies = [], [], []
        for name, value in model.state_dict(keep_vars=True).items():
            target = mine[name]
            if value.is_floating_point():
                avg.append(target.data)
                cur.append(value.detach().to(target.dtype))
            else:
                copies.append((target, value))
        return avg, cur, copies

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move the average towards ``model``'s current weights."""
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        avg, cur, copies = self._pairs(model)
        if avg:
            torch._foreach_lerp_(avg, cur, 1.0 - d)
        for target, value in copies:
            target.copy_(value)

    def state_dict(self) -> dict[str, Any]:
        """Averaged weights and the update count (for ``state.pt``)."""
        return {"module": self.module.state_dict(), "updates": self.updates, "decay": self.decay}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.module.load_state_dict(state["module"])
        self.updates = int(state["updates"])
