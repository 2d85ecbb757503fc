"""Train an LDCT denoiser on simulated pairs, with a wall-clock budget and optional transfer learning.

A compact loop (Adam, MSE on 64x64 patches, bf16 autocast, cosine learning rate
over the time budget) because the engine's epoch-based :class:`medattn.training.Trainer`
has no notion of a time budget nor of starting from other weights; checkpoints use
the engine's format (``<tag>.safetensors`` + JSON card, atomic writes,
:func:`medattn.training.checkpoint.save_checkpoint`), so ``medattn denoise --model
run/best.safetensors`` and the hub read them. The same data is also available to
``medattn train`` as ``data.kind: ldct`` (:func:`build_ldct`).

Transfer learning (``init``): start from the weights of another run (e.g. pretrained
on chest and head CT) and fine-tune on the target anatomy::

    python -m medattn.denoise.train --config configs/ldct_cadn_pretrain.yaml
    python -m medattn.denoise.train --config configs/ldct_cadn_finetune.yaml
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medattn.denoise.data import LDCTPairs, SimulationSettings, collection
from medattn.errors import ConfigError


@dataclass
class LDCTTrainConfig:
    """Everything one denoiser training run needs (YAML keys are the field names)."""

    model: str = "cadn_small"
    options: dict[str, Any] = field(default_factory=dict)
    train_roles: list[str] = field(default_factory=lambda: ["pretrain", "target"])
    val_roles: list[str] = field(default_factory=lambda: ["val"])
    out: str = "runs/ldct/run"
    init: str | None = None
    minutes: float = 8.0
    max_steps: int | None = None
    batch_size: int = 16
    lr: float = 1e-3
    min_lr: float = 1e-5
    patch_size: int = 64
    min_slice_size: int = 0
    slice_step: int = 2
    dose: float = 0.25
    i0: float = 2.0e6
    precision: str = "bf16"
    val_every: int = 100
    seed: int = 0
    threads: int | None = None
    cache_dir: str | None = "runs/ldct_cache"
    data_root: str | None = None

    @classmethod
    def from_yaml(cls, path: str | Path, **overrides: Any) -> LDCTTrainConfig:
        import yaml

        try:
            tree = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"{path}: cannot read config ({exc})") from exc
        unknown = set(tree) - set(cls.__dataclass_fields__)
        if unknown:
            raise ConfigError(f"{path}: unknown keys {sorted(unknown)}")
        tree.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**tree)


def _val_psnr(model: Any, val: LDCTPairs | None, precision: str) -> float | None:
    """Mean PSNR (HU window -160..240, the abdomen window) over the validation slices."""
    if val is None:
        return None
    import torch

    from medattn.metrics import psnr

    scores = []
    model.eval()
    with torch.no_grad():
        for i in range(len(val)):
            item = val[i]
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
                out = model(item["image"][None]).float()[0, 0].numpy() * 1000.0
            scores.append(psnr(out, item["target"][0].numpy() * 1000.0, window=(40.0, 400.0)))
    model.train()
    return float(np.mean(scores))


def train_denoiser(cfg: LDCTTrainConfig, progress: bool = True) -> dict[str, Any]:
    """Run one training; returns the summary also written to ``<out>/summary.json``."""
    import torch
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from medattn.models import create
    from medattn.models.hub import load_model_file
    from medattn.training.checkpoint import save_checkpoint
    from medattn.utils.fileio import atomic_write_text

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    settings = SimulationSettings(dose=cfg.dose, i0=cfg.i0)
    train_vols = collection(cfg.train_roles, cfg.data_root)
    if not train_vols:
        raise ConfigError(f"no CT volume with roles {cfg.train_roles} found (is ../shared/data there?)")
    val_vols = collection(cfg.val_roles, cfg.data_root) if cfg.val_roles else []
    overlap = {v.group for v in train_vols} & {v.group for v in val_vols}
    if overlap:
        raise ConfigError(f"scans {sorted(overlap)} are in both training and validation")
    train = LDCTPairs(train_vols, "patch", settings, seed=cfg.seed, patch_size=cfg.patch_size,
                      patches_per_epoch=10**9, slice_step=cfg.slice_step, cache_dir=cfg.cache_dir,
                      min_size=cfg.min_slice_size)
    val = LDCTPairs(val_vols, "slice", settings, seed=cfg.seed, cache_dir=cfg.cache_dir) if val_vols else None
    train.prepare(progress=progress)
    if val is not None:
        val.prepare(progress=progress)

    if cfg.init:
        model = load_model_file(cfg.init)
        card = json.loads(Path(cfg.init).with_suffix(".json").read_text(encoding="utf-8"))
        name, options = card["model"], card.get("options", {})
        if name != cfg.model:
            raise ConfigError(f"init weights are for {name!r}, the config trains {cfg.model!r}")
    else:
        name, options = cfg.model, dict(cfg.options)
        model = create(name, **options)
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    budget = cfg.minutes * 60.0
    history: list[dict[str, float]] = []
    best = -math.inf
    start = time.monotonic()
    step = 0
    batch_idx = 0
    n_params = sum(p.numel() for p in model.parameters())

    def save(tag: str, metrics: dict[str, Any]) -> None:
        save_checkpoint(out, tag, model, name=name, options=options, task="denoising",
                        input_size=(cfg.patch_size, cfg.patch_size), epoch=step, metrics=metrics,
                        config=asdict(cfg), extra={"params": n_params, "normalisation": "HU / 1000",
                                                   "predicts": "clean image (residual: input - noise)"})

    columns = (TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.fields[info]}"),
               TimeElapsedColumn())
    with Progress(*columns, disable=not progress) as bar:
        task = bar.add_task(f"train {name}", total=budget, info="")
        while True:
            elapsed = time.monotonic() - start
            if elapsed >= budget or (cfg.max_steps is not None and step >= cfg.max_steps):
                break
            frac = elapsed / budget if cfg.max_steps is None else step / cfg.max_steps
            lr = cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (1 + math.cos(math.pi * min(frac, 1.0)))
            for g in opt.param_groups:
                g["lr"] = lr
            items = [train[batch_idx * cfg.batch_size + k] for k in range(cfg.batch_size)]
            batch_idx += 1
            x = torch.stack([it["image"] for it in items])
            y = torch.stack([it["target"] for it in items])
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.precision == "bf16"):
                pred = model(x)
            loss = torch.nn.functional.mse_loss(pred.float(), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            loss_value = float(loss.detach())
            row = {"step": step, "seconds": round(time.monotonic() - start, 1), "loss": loss_value, "lr": lr}
            if step % cfg.val_every == 0:
                row["val_psnr"] = _val_psnr(model, val, cfg.precision) or float("nan")
                if row["val_psnr"] > best:
                    best = row["val_psnr"]
                    save("best", {"val_psnr": best, "step": step})
            history.append(row)
            bar.update(task, completed=min(time.monotonic() - start, budget),
                       info=f"step {step} loss {loss_value:.2e} lr {lr:.1e}")
    final = _val_psnr(model, val, cfg.precision)
    save("last", {"val_psnr": final, "step": step})
    if final is not None and final >= best:
        best = final
        save("best", {"val_psnr": best, "step": step})
    summary = {"model": name, "options": options, "params": n_params, "steps": step,
               "patches": step * cfg.batch_size, "seconds": round(time.monotonic() - start, 1),
               "best_val_psnr": best if math.isfinite(best) else None, "final_val_psnr": final, "init": cfg.init, "config": asdict(cfg)}
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    atomic_write_text(out / "history.json", json.dumps(history) + "\n")
    return summary


def build_ldct(cfg: Any) -> Any:
    """``data.kind: ldct`` for ``medattn train``: simulated pairs; options = LDCTTrainConfig data fields."""
    from medattn.training.data import DataBundle

    o = dict(cfg.data.options)
    settings = SimulationSettings(dose=float(o.get("dose", 0.25)), i0=float(o.get("i0", 2.0e6)))
    train_vols = collection(o.get("train_roles", ["pretrain", "target"]), o.get("data_root"))
    val_vols = collection(o.get("val_roles", ["val"]), o.get("data_root"))
    seed = int(o.get("seed", 0))
    train = LDCTPairs(train_vols, "patch", settings, seed=seed, patch_size=int(o.get("patch_size", 64)),
                      patches_per_epoch=int(o.get("patches_per_epoch", 4096)),
                      slice_step=int(o.get("slice_step", 2)), cache_dir=o.get("cache_dir", "runs/ldct_cache"))
    val = LDCTPairs(val_vols, "slice", settings, seed=seed, cache_dir=o.get("cache_dir", "runs/ldct_cache"))
    return DataBundle(train=train, val=val, target_key="target",
                      split={"train": [v.name for v in train_vols], "val": [v.name for v in val_vols]})


try:  # make ``data.kind: ldct`` known to the engine when it is there
    from medattn.training.data import register_dataset_builder

    register_dataset_builder("ldct")(build_ldct)
except ImportError:  # pragma: no cover - engine not installed
    pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Train an LDCT denoiser on simulated low-dose pairs.")
    parser.add_argument("--config", help="YAML file with LDCTTrainConfig fields")
    parser.add_argument("--model", help="registry name (cadn, cadn_small, redcnn, dncnn)")
    parser.add_argument("--out", help="run folder")
    parser.add_argument("--minutes", type=float, help="wall-clock budget")
    parser.add_argument("--max-steps", type=int, dest="max_steps", help="stop after this many steps")
    parser.add_argument("--init", help="start from these weights (.safetensors + .json): transfer learning")
    parser.add_argument("--threads", type=int, help="torch threads")
    parser.add_argument("--min-slice-size", type=int, dest="min_slice_size",
                        help="train only on slices at least this many pixels on each side")
    args = parser.parse_args(argv)
    over = {k: v for k, v in vars(args).items() if k != "config" and v is not None}
    cfg = LDCTTrainConfig.from_yaml(args.config, **over) if args.config else LDCTTrainConfig(**over)
    summary = train_denoiser(cfg)
    print(json.dumps({k: summary[k] for k in ("model", "params", "steps", "seconds", "best_val_psnr")}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
