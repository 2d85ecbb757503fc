"""Small-lesion recall of a segmentation model: Dice by lesion-size bin, and small polyps in large frames.

1. **Dice by size bin.** The model (a bundled name or a run folder) predicts every image of the
   PraNet test lists (Kvasir-100, ClinicDB-62; ``--parts``) at its card's input size (or each of
   ``--sizes``) and the Dice of ``p > 0.5`` is computed at the image's own resolution. Images are
   binned by the ground-truth area as a share of the image: ``< 1 %``, ``1-5 %``, ``> 5 %``; per bin
   the count, mean Dice and the number *missed* (Dice < 0.1).
2. **Card-resolution check.** A polyp of a test image, shrunk to a diameter of ``--diameters``
   pixels (default 15, 30, 60), is pasted (soft-edged) into another test image upscaled to a
   ``--frame`` x ``--frame`` frame (default 1000), on lit mucosa as far as possible from that
   frame's own polyp, and ``medattn.inference.predict_image`` (what ``medattn predict`` runs) segments the frame.
   A pasted polyp counts as *found* when at least half of its pixels get ``p > 0.5``; *other
   components* are the components of ``p > 0.5`` (8-neighbourhood) touching neither the pasted polyp
   nor the frame's own polyp (false alarms, or parts of the frame's polyp drawn apart from it).

Each of ``--zoom`` (default 1: off) is a set of rows in both tables: ``predict_image(..., zoom=z)``
also predicts overlapping windows of 1/z of the image side and adds what only they find
(:mod:`medattn.inference.predict`).

Writes ``benchmarks/results/small_lesions.{json,md}`` (``--out`` another name)::

    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python benchmarks/small_lesions.py --model bsanet-polyp
    .venv/bin/python benchmarks/small_lesions.py --model runs/polyp-recipe-full --sizes 128 256 --tta
    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python benchmarks/small_lesions.py --model bsanet-polyp --zoom 1 2 3 \
        --out benchmarks/results/small_lesions_zoom
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
BINS = ((0.0, 0.01, "< 1 %"), (0.01, 0.05, "1-5 %"), (0.05, 1.01, "> 5 %"))
PART_LABELS = {"test_kvasir": "Kvasir-100", "test_clinicdb": "ClinicDB-62"}


def size_bin(area_fraction: float) -> str:
    """The bin label of a lesion covering ``area_fraction`` of the image.

    >>> [size_bin(a) for a in (0.0, 0.0099, 0.01, 0.05, 0.2)]
    ['< 1 %', '< 1 %', '1-5 %', '> 5 %', '> 5 %']
    """
    for lo, hi, label in BINS:
        if lo <= area_fraction < hi:
            return label
    return BINS[-1][2]


def summarise(rows: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per bin (and ``all``): ``n``, ``mean_dice``, ``missed`` (Dice < 0.1) from per-image rows."""
    out: dict[str, dict[str, Any]] = {}
    for label in [b[2] for b in BINS] + ["all"]:
        dice = [r["dice"] for r in rows if label == "all" or r["bin"] == label]
        out[label] = {"n": len(dice), "mean_dice": float(np.mean(dice)) if dice else None,
                      "missed": int(sum(d < 0.1 for d in dice))}
    return out


def row_label(size: tuple[int, int], zoom: int) -> str:
    """The key of a set of rows: ``128x128`` (zoom 1, as before zoom existed), ``128x128 zoom 3``.

    >>> row_label((128, 128), 1), row_label((96, 128), 3), split_label("96x128 zoom 3"), split_label("128x128")
    ('128x128', '96x128 zoom 3', ('96x128', 3), ('128x128', 1))
    """
    label = f"{size[0]}x{size[1]}"
    return label if zoom == 1 else f"{label} zoom {zoom}"


def split_label(label: str) -> tuple[str, int]:
    """(inference size, zoom) of a :func:`row_label`."""
    size, _, zoom = label.partition(" zoom ")
    return size, int(zoom or 1)


def dice_by_size(lm: Any, samples: Sequence[Any], tta: bool, zoom: int = 1) -> list[dict[str, Any]]:
    """Per-image Dice at native resolution, GT area fraction and bin."""
    from medattn.data.datasets import read_sample_mask
    from medattn.inference.predict import predict_image
    from medattn.io import read_rgb
    from medattn.metrics.segmentation import dice

    rows = []
    for s in samples:
        image, gt = read_rgb(s.image), read_sample_mask(s)
        prob = predict_image(lm, image, tta=tta, zoom=zoom).prob
        frac = float(gt.mean())
        rows.append({"id": s.id, "area": frac, "bin": size_bin(frac), "dice": float(dice(prob, gt))})
    return rows


def _resize(a: np.ndarray, size: tuple[int, int], mode: str) -> np.ndarray:
    import torch
    import torch.nn.functional as F

    t = torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))
    t = t.permute(2, 0, 1)[None] if t.ndim == 3 else t[None, None]
    kw = {"mode": "bilinear", "align_corners": False, "antialias": True} if mode == "bilinear" else {"mode": mode}
    out = F.interpolate(t, size=size, **kw)[0]
    return out.permute(1, 2, 0).numpy() if a.ndim == 3 else out[0].numpy()


def paste_small_polyp(background: np.ndarray, bg_mask: np.ndarray, polyp: np.ndarray, polyp_mask: np.ndarray,
                      frame: int, diameter: int) -> tuple[np.ndarray, np.ndarray]:
    """A ``frame`` x ``frame`` RGB uint8 frame and the pasted polyp's bool mask.

    ``background`` (and its mask) is upscaled to the frame; the polyp's bounding box with a 50 %
    margin is shrunk so that the polyp's equivalent diameter is ``diameter`` px and blended in with
    a soft elliptical edge, centred on the background pixel farthest from the background polyp.
    """
    from scipy import ndimage

    bg = _resize(background.astype(np.float32), (frame, frame), "bilinear")
    bgm = _resize(bg_mask.astype(np.float32), (frame, frame), "nearest-exact") > 0.5
    ys, xs = np.nonzero(polyp_mask)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    my, mx = (y1 - y0) // 2, (x1 - x0) // 2
    y0, y1 = max(0, y0 - my), min(polyp.shape[0], y1 + my)
    x0, x1 = max(0, x0 - mx), min(polyp.shape[1], x1 + mx)
    crop, cmask = polyp[y0:y1, x0:x1].astype(np.float32), polyp_mask[y0:y1, x0:x1].astype(np.float32)
    scale = diameter / (2.0 * np.sqrt(polyp_mask.sum() / np.pi))
    h, w = max(2, round(crop.shape[0] * scale)), max(2, round(crop.shape[1] * scale))
    crop, cmask = _resize(crop, (h, w), "bilinear"), _resize(cmask, (h, w), "bilinear") > 0.5
    # centre: on lit mucosa (no dark border or text overlay within the polyp's size or 5 % of the
    # frame), as far as possible from the background polyp and the frame's edge
    # (relaxed step by step when a frame offers no such place)
    lit = ndimage.uniform_filter(bg.mean(axis=2), size=9) > 60
    edge = max(2 * h, 2 * w, frame // 8)
    inner = np.zeros_like(lit)
    inner[edge:-edge, edge:-edge] = True
    away = ndimage.distance_transform_edt(~bgm)
    for allowed in (ndimage.binary_erosion(lit, iterations=max(h, w, frame // 20)) & inner, lit & inner, inner):
        dist = np.where(allowed, away + 1.0, 0.0)
        if dist.max() > 0:
            break
    cy, cx = np.unravel_index(int(np.argmax(dist)), dist.shape)
    top, left = cy - h // 2, cx - w // 2
    yy, xx = np.mgrid[0:h, 0:w]
    r = np.sqrt(((yy - (h - 1) / 2) / (h / 2)) ** 2 + ((xx - (w - 1) / 2) / (w / 2)) ** 2)
    alpha = np.clip((1.0 - r) / 0.3, 0.0, 1.0)[..., None]  # soft edge over the outer 30 %
    region = bg[top: top + h, left: left + w]
    bg[top: top + h, left: left + w] = alpha * crop + (1 - alpha) * region
    mask = np.zeros((frame, frame), bool)
    mask[top: top + h, left: left + w] = cmask
    return np.clip(bg, 0, 255).round().astype(np.uint8), mask


def frame_check(lm: Any, samples: Sequence[Any], frame: int, diameters: Sequence[int], count: int,
                tta: bool, zoom: int = 1) -> list[dict[str, Any]]:
    """Paste ``count`` polyps per diameter into large frames; record whether each is found and the other components."""
    from scipy import ndimage

    from medattn.data.datasets import read_sample_mask
    from medattn.inference.predict import predict_image
    from medattn.io import read_rgb

    rows = []
    for i in range(count):
        src, bg = samples[i % len(samples)], samples[(i + 1) % len(samples)]
        polyp, pmask = read_rgb(src.image), read_sample_mask(src)
        background, bmask = read_rgb(bg.image), read_sample_mask(bg)
        own = _resize(bmask.astype(np.float32), (frame, frame), "nearest-exact") > 0.5
        for d in diameters:
            image, mask = paste_small_polyp(background, bmask, polyp, pmask, frame, d)
            prob = predict_image(lm, image, tta=tta, zoom=zoom).prob
            hit = float((prob[mask] > 0.5).mean())
            labels, n = ndimage.label(prob > 0.5, structure=np.ones((3, 3)))
            other = n - len(set(np.unique(labels[mask | own]).tolist()) - {0})
            rows.append({"polyp": src.id, "background": bg.id, "diameter": d, "pixels": int(mask.sum()),
                         "recall": hit, "found": hit >= 0.5, "max_prob": float(prob[mask].max()),
                         "other_components": other})
    return rows


def markdown(result: dict[str, Any]) -> str:
    m = result["meta"]
    zoom_note = (" Zoom z: also windows of 1/z of the image side, what only they find added to the whole-frame "
                 "map (`medattn predict --zoom z`)." if any(split_label(k)[1] > 1 for k in result["frames"])
                 or any(split_label(k)[1] > 1 for p in result["parts"] for k in p["summary"]) else "")
    lines = [f"Model `{m['model']}` (card input size {m['card_input_size']}), TTA {'on' if m['tta'] else 'off'}, "
             f"{m['threads']} thread(s), {m['date']}, {m['seconds']:.0f} s. Dice of `p > 0.5` at the image's "
             f"resolution; bins by ground-truth area share; missed = Dice < 0.1.{zoom_note}", "",
             "| test set | inference size | zoom | bin | images | mean Dice | missed |", "|---|---|---|---|---|---|---|"]
    for part in result["parts"]:
        for key, summary in part["summary"].items():
            size, zoom = split_label(key)
            for label, s in summary.items():
                md = f"{s['mean_dice']:.3f}" if s["mean_dice"] is not None else "-"
                lines.append(f"| {PART_LABELS.get(part['part'], part['part'])} | {size} | {zoom} | {label} | {s['n']} "
                             f"| {md} | {s['missed']} |")
    if result.get("frames"):
        lines += ["", f"Small polyps pasted into {m['frame']} x {m['frame']} frames (`predict_image`, as "
                      "`medattn predict`): found = at least half the polyp's pixels at p > 0.5; other components "
                      "per frame = components of p > 0.5 touching neither the pasted nor the frame's own polyp.", "",
                  "| inference size | zoom | diameter (px) | pasted | found | mean pixel recall | mean max p "
                  "| other components per frame |",
                  "|---|---|---|---|---|---|---|---|"]
        for key, rows in result["frames"].items():
            size, zoom = split_label(key)
            for d in sorted({r["diameter"] for r in rows}):
                sel = [r for r in rows if r["diameter"] == d]
                other = [r["other_components"] for r in sel if "other_components" in r]
                lines.append(f"| {size} | {zoom} | {d} | {len(sel)} | {sum(r['found'] for r in sel)} "
                             f"| {np.mean([r['recall'] for r in sel]):.2f} | {np.mean([r['max_prob'] for r in sel]):.2f} "
                             f"| {np.mean(other) if other else float('nan'):.1f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="bsanet-polyp", help="bundled model name or run folder")
    ap.add_argument("--data", type=Path, default=Path(os.environ.get("MEDATTN_DATA", ROOT.parent / "shared" / "data")))
    ap.add_argument("--parts", nargs="*", default=["test_kvasir", "test_clinicdb"])
    ap.add_argument("--sizes", nargs="*", type=int, default=None, help="inference sizes (default: the card's)")
    ap.add_argument("--tta", action="store_true", help="test-time flips (as medattn predict --tta)")
    ap.add_argument("--zoom", nargs="*", type=int, default=[1],
                    help="zooms to measure, each a set of rows (as medattn predict --zoom; 1: off)")
    ap.add_argument("--frame", type=int, default=1000)
    ap.add_argument("--diameters", nargs="*", type=int, default=[15, 30, 60])
    ap.add_argument("--frames", type=int, default=10, help="pasted polyps per diameter (0: skip the check)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=RESULTS / "small_lesions",
                    help="results path without suffix: writes OUT.json and OUT.md")
    args = ap.parse_args(argv)
    if not args.zoom or any(z < 1 for z in args.zoom):
        ap.error(f"--zoom takes integers >= 1 (1: off), got {args.zoom}")

    import torch
    from rich.progress import Progress

    from medattn.data import pranet_split
    from medattn.inference import load_model
    from medattn.utils.fileio import atomic_write_text

    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    lm = load_model(args.model)
    card_size = tuple(lm.input_size)
    sizes = [(s, s) for s in args.sizes] if args.sizes else [card_size]
    split = pranet_split(args.data)
    unknown = [p for p in args.parts if p not in split]
    if unknown:
        ap.error(f"--parts {unknown}: the PraNet split has {sorted(k for k in split if k != 'train')}")
    result: dict[str, Any] = {"parts": [], "frames": {}}
    with Progress() as bar:
        task = bar.add_task("small lesions", total=len(sizes) * len(args.zoom)
                            * (len(args.parts) + (1 if args.frames else 0)))
        for size, zoom in [(s, z) for s in sizes for z in args.zoom]:
            lm.input_size = size
            label = row_label(size, zoom)
            for part in args.parts:
                bar.update(task, description=f"{PART_LABELS.get(part, part)} at {label}")
                rows = dice_by_size(lm, split[part], args.tta, zoom)
                entry = next((p for p in result["parts"] if p["part"] == part), None)
                if entry is None:
                    entry = {"part": part, "summary": {}, "images": {}}
                    result["parts"].append(entry)
                entry["summary"][label], entry["images"][label] = summarise(rows), rows
                bar.advance(task)
            if args.frames:
                bar.update(task, description=f"pasted polyps at {label}")
                result["frames"][label] = frame_check(lm, split["test_kvasir"], args.frame, args.diameters,
                                                      args.frames, args.tta, zoom)
                bar.advance(task)
    result["meta"] = {"model": args.model, "card_input_size": list(card_size), "tta": args.tta, "zoom": args.zoom,
                      "threads": args.threads, "date": time.strftime("%Y-%m-%d"), "frame": args.frame,
                      "seconds": time.perf_counter() - t0}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out.with_suffix(".json"), json.dumps(result, indent=1) + "\n")
    table = markdown(result)
    atomic_write_text(args.out.with_suffix(".md"), "# Small-lesion recall\n\n" + table)
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
