"""The weakly-supervised lesion classifier CAWE reads: crops, training, localisation scores.

Only image-level labels are used (sec. 3.1 of seed paper 002). From segmentation
sets we make them on crops: each image gives a ``grid x grid`` lattice of square
crops of side ``crop_frac * min(H, W)``; a crop is **positive when the lesion
covers at least** ``pos_fraction`` **(default 10 %) of it**, **negative when it
holds no lesion pixel**, and is dropped in between (ambiguous). Masks are never
shown to the network; they only make the labels and, on held-out images, score
where the CAWE map points (pointing game, energy inside the mask).

The classifier sees lesions at the scale of a crop; on a whole image, feed it at
``crop_size / crop_frac`` pixels (:func:`whole_image_size`) so the scale matches.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from medattn.data.types import Sample
from medattn.enhance._images import gray_of, resize, track
from medattn.errors import DatasetError

POS_FRACTION = 0.10


@dataclass
class CropSet:
    """Labelled crops: ``images`` uint8 (N, S, S[, 3]), ``labels`` float32 (N,) 1 = lesion, ``source`` ids."""

    images: np.ndarray
    labels: np.ndarray
    source: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def positives(self) -> int:
        return int(self.labels.sum())


def _read(sample: Sample, in_channels: int) -> tuple[np.ndarray, np.ndarray]:
    from medattn.data.datasets import read_sample_mask
    from medattn.io import read_rgb

    rgb = read_rgb(sample.image)
    mask = read_sample_mask(sample)
    if mask.shape != rgb.shape[:2]:
        raise DatasetError(f"{sample.image}: mask size {mask.shape} differs from the image {rgb.shape[:2]}")
    return (gray_of(rgb) if in_channels == 1 else rgb), mask


def crops_of(image: np.ndarray, mask: np.ndarray, crop_size: int = 64, grid: int = 3, crop_frac: float = 0.5,
             pos_fraction: float = POS_FRACTION) -> tuple[list[np.ndarray], list[float]]:
    """The labelled crops of one image (see the module docstring for the rule)."""
    h, w = mask.shape
    side = max(1, round(crop_frac * min(h, w)))
    ys = np.linspace(0, h - side, grid).round().astype(int) if grid > 1 else [(h - side) // 2]
    xs = np.linspace(0, w - side, grid).round().astype(int) if grid > 1 else [(w - side) // 2]
    out, labels = [], []
    for y in ys:
        for x in xs:
            frac = float(mask[y:y + side, x:x + side].mean())
            if frac >= pos_fraction or frac == 0.0:
                out.append(resize(image[y:y + side, x:x + side], (crop_size, crop_size)))
                labels.append(1.0 if frac >= pos_fraction else 0.0)
    return out, labels


def build_crops(samples: Sequence[Sample], crop_size: int = 64, grid: int = 3, crop_frac: float = 0.5,
                pos_fraction: float = POS_FRACTION, in_channels: int = 1, progress: bool = True) -> CropSet:
    """Crops with image-level labels from segmentation ``samples`` (masks only make the labels)."""
    images, labels, source = [], [], []
    for s in track(samples, "making crops", len(samples), progress):
        img, mask = _read(s, in_channels)
        c, lab = crops_of(img, mask, crop_size, grid, crop_frac, pos_fraction)
        images += c
        labels += lab
        source += [s.id] * len(c)
    if not images:
        raise DatasetError("no crops: the samples gave neither positive nor negative crops")
    return CropSet(np.stack(images), np.asarray(labels, np.float32), source)


def weak_label_split(data_root: str | os.PathLike[str], limit: int = 0, seed: int = 0) -> dict[str, list[Sample]]:
    """The images behind the CAWE classifier (``benchmarks/enhance_cawe.py``) and its held-out scores.

    Training pool: the PraNet training split of Kvasir-SEG + CVC-ClinicDB and a seeded 80 % of
    PH2; ``limit`` > 0 keeps a seeded ``limit`` of them; 10 % of the pool (by image) is ``val``
    (early stopping). Held out, never trained on: ``test_kvasir`` (100) and ``test_clinicdb``
    (62), the PraNet test images, and ``test_ph2``, the other 20 % of PH2.
    """
    from medattn.data import discover, pranet_split, ratio_split

    root = Path(data_root)
    split = pranet_split(root)
    ph2 = ratio_split(discover(root / "ph2").samples, (0.8, 0.2), seed=seed)
    pool = split["train"] + ph2["train"]
    if limit:
        pool = ratio_split(pool, (limit, len(pool) - limit), seed=seed)["train"]
    parts = ratio_split(pool, (0.9, 0.1), seed=seed)
    return {"train": parts["train"], "val": parts["val"], "test_kvasir": split["test_kvasir"],
            "test_clinicdb": split["test_clinicdb"], "test_ph2": ph2["val"]}


def whole_image_size(crop_size: int, crop_frac: float) -> int:
    """Side at which a whole image shows lesions at the scale the classifier was trained on."""
    return round(crop_size / crop_frac / 32) * 32 or 32


def _to_tensor(images: np.ndarray) -> torch.Tensor:
    t = torch.from_numpy(np.array(images)).float().div_(255)
    return t[:, None] if t.ndim == 3 else t.permute(0, 3, 1, 2).contiguous()


def _augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    # flips and 90-degree turns: lesions have no preferred orientation
    if torch.rand(1, generator=gen) < 0.5:
        x = x.flip(-1)
    if torch.rand(1, generator=gen) < 0.5:
        x = x.flip(-2)
    k = int(torch.randint(0, 4, (1,), generator=gen))
    x = torch.rot90(x, k, dims=(-2, -1))
    gain = 1 + 0.2 * (torch.rand(x.shape[0], 1, 1, 1, generator=gen) - 0.5)
    return (x * gain).clamp_(0, 1)


@dataclass
class ClassifierResult:
    model: torch.nn.Module
    history: list[dict[str, float]]
    best_epoch: int
    run_dir: Path | None


@torch.no_grad()
def predict_crops(model: torch.nn.Module, crops: CropSet, batch: int = 128) -> np.ndarray:
    """Lesion probabilities of ``crops`` (N,)."""
    model.eval()
    x = _to_tensor(crops.images)
    return np.concatenate([torch.sigmoid(model(x[i:i + batch]))[:, 0].numpy() for i in range(0, len(x), batch)])


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC by the rank-sum (Mann-Whitney) formula, ties counted half."""
    from scipy.stats import rankdata

    labels = np.asarray(labels) > 0.5
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(scores)
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def train_classifier(train: CropSet, val: CropSet, *, backbone: str = "resnet18", width: float = 0.25,
                     pretrained: str | None = None, epochs: int = 20, batch: int = 64, lr: float = 1e-3,
                     patience: int = 4, seed: int = 0, run_dir: str | os.PathLike[str] | None = None,
                     time_limit_s: float | None = None, progress: bool = True) -> ClassifierResult:
    """Adam + class-balanced BCE with early stopping on the validation loss (sec. 3.5: Adam, early stopping).

    The best model is kept (and written to ``run_dir/best.safetensors`` with its
    card, loadable by ``medattn enhance --model RUN_DIR``).
    """
    from medattn.models import create

    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    in_channels = 1 if train.images.ndim == 3 else 3
    options: dict[str, Any] = {"backbone": backbone, "in_channels": in_channels, "num_classes": 1,
                               "width": width if backbone == "resnet18" else 1.0}
    model = create("lesion_classifier", **options, pretrained=pretrained)
    xtr, ytr = _to_tensor(train.images), torch.from_numpy(train.labels)[:, None]
    xva, yva = _to_tensor(val.images), torch.from_numpy(val.labels)[:, None]
    pos = max(train.positives, 1)
    pos_weight = torch.tensor([(len(train) - pos) / pos])  # balance lesion / background crops
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=lr)
    steps = math.ceil(len(train) / batch)
    history: list[dict[str, float]] = []
    best_state, best_loss, best_epoch, waited = None, float("inf"), 0, 0
    start = time.monotonic()
    for epoch in range(1, epochs + 1):
        model.train()
        order = torch.randperm(len(train), generator=gen)
        total, seen = 0.0, 0
        for i in track(range(steps), f"epoch {epoch}/{epochs}", steps, progress):
            idx = order[i * batch:(i + 1) * batch]
            logits = model(_augment(xtr[idx], gen))
            loss = F.binary_cross_entropy_with_logits(logits, ytr[idx], pos_weight=pos_weight)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
            seen += len(idx)
            if time_limit_s is not None and time.monotonic() - start > time_limit_s:
                break  # out of time within the epoch: validate what we have
        probs = torch.from_numpy(predict_crops(model, val))[:, None]
        val_loss = float(F.binary_cross_entropy(probs.clamp(1e-6, 1 - 1e-6), yva, weight=1 + yva * (pos_weight - 1)))
        row = {"epoch": epoch, "train_loss": total / max(seen, 1), "val_loss": val_loss,
               "val_auc": auc(val.labels, probs[:, 0].numpy()),
               "val_acc": float(((probs > 0.5).float() == yva).float().mean())}
        history.append(row)
        if val_loss < best_loss:
            best_loss, best_epoch, waited = val_loss, epoch, 0
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            waited += 1
        if progress:
            print(f"epoch {epoch}: " + ", ".join(f"{k} {v:.4f}" for k, v in row.items() if k != "epoch"), flush=True)
        if waited >= patience or (time_limit_s is not None and time.monotonic() - start > time_limit_s):
            break
    del xva
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    out_dir = Path(run_dir) if run_dir is not None else None
    if out_dir is not None:
        from medattn.training.checkpoint import save_checkpoint

        out_dir.mkdir(parents=True, exist_ok=True)
        size = train.images.shape[1]
        save_checkpoint(out_dir, "best", model, name="lesion_classifier", options=options, task="classification",
                        input_size=(size, size), epoch=best_epoch, metrics=history[best_epoch - 1],
                        extra={"trained_on": "lesion / background crops", "history": history})
    return ClassifierResult(model, history, best_epoch, out_dir)


def localisation_scores(model: torch.nn.Module, samples: Sequence[Sample], size: int = 128, in_channels: int = 1,
                        layer: torch.nn.Module | str | None = None, progress: bool = True) -> dict[str, float]:
    """Where CAWE points on whole held-out images, against chance.

    * pointing game: the map's maximum lies inside the lesion mask; a uniformly
      random point does so with probability = the mask's area fraction;
    * energy: the share of the map's mass inside the mask; a uniform (or
      random) map has the mask's area fraction.
    """
    from medattn.enhance.cawe import CAWE

    cawe = CAWE(model, layer)
    hits, chance, energy = [], [], []
    for s in track(samples, "CAWE on held-out images", len(samples), progress):
        img, mask = _read(s, in_channels)
        img, mask = resize(img, (size, size)), resize(mask, (size, size))
        if not mask.any():
            continue
        cam = cawe(_to_tensor(img[None]))[0].numpy()
        peak = np.unravel_index(int(np.argmax(cam)), cam.shape)
        hits.append(float(mask[peak]))
        chance.append(float(mask.mean()))
        energy.append(float((cam * mask).sum() / max(cam.sum(), 1e-12)))
    n = len(hits)
    return {"images": n, "pointing": float(np.mean(hits)) if n else float("nan"),
            "pointing_chance": float(np.mean(chance)) if n else float("nan"),
            "energy": float(np.mean(energy)) if n else float("nan"),
            "energy_chance": float(np.mean(chance)) if n else float("nan")}
