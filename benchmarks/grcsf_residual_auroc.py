"""Does GRCSF's MAE residual map highlight lesions? Per-image AUROC against PH2 lesion masks.

For every PH2 image (resized to each ``--sizes`` entry) the residual map
``MAE.residual_map`` (``--masks`` complementary masking passes at each
``--mask-ratios`` entry) is scored as a per-pixel lesion detector against the
lesion mask. Each ``--mae`` weights file (``LABEL=PATH``; pretraining-length
snapshots from ``medattn pretrain --set snapshot_epochs=[...]``) is compared
with a randomly initialised MAE of the same architecture ("0 epochs") and with
two detectors that learn nothing: darkness (``1 - luminance``) and the distance
of each pixel's colour from the image's mean colour. MAEs trained on per-patch
normalised pixels (``norm_pix_loss``) are de-normalised both ways
(``--stats``: ``context`` = the visible patches' statistics, the default of
``residual_map``; ``patch`` = each hidden patch's own, which leaks its
brightness, see ``MAE.reconstruct``). Scores are also split by how much of the
image the lesion fills (below / at least ``--large`` of the pixels): a
context-based reconstruction cannot single out a lesion that *is* most of the context.

Writes ``benchmarks/results/<tag>.{json,md}`` and, with ``--pictures PNG``,
image | ground truth | residual maps for a few images::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/grcsf_residual_auroc.py \\
        --mae "norm-pix 6 ep=runs/premise/mae-normpix/mae.safetensors" --sizes 128 --pictures docs/img/residual.png
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.stats import rankdata

from medattn.data import SegmentationDataset, discover
from medattn.models.grcsf import read_mae_file
from medattn.models.mae import MAE
from medattn.utils.fileio import atomic_write_text
from medattn.utils.paths import shared_data_root


def auroc(score: np.ndarray, label: np.ndarray) -> float:
    """Mann-Whitney AUROC with tie-averaged ranks."""
    ranks = rankdata(score)
    pos = int(label.sum())
    neg = label.size - pos
    return float((ranks[label].sum() - pos * (pos + 1) / 2) / (pos * neg))


def load_images(root: Path, size: int, limit: int | None) -> tuple[torch.Tensor, np.ndarray]:
    """PH2 images ``(N, 3, size, size)`` in [0, 1] and their masks ``(N, size, size)`` bool."""
    samples = discover(root / "ph2").samples[:limit]
    ds = SegmentationDataset(samples, size=(size, size))
    items = [ds[i] for i in range(len(ds))]
    return torch.stack([it["image"] for it in items]), np.stack([it["mask"][0].numpy() > 0.5 for it in items])


def residual_maps(net: MAE, images: torch.Tensor, ratio: float, masks: int, stats: str,
                  batch: int = 25) -> np.ndarray:
    """``(N, H, W)`` residual maps of ``net`` (eval mode, no gradients)."""
    net.eval()
    imgs = images if images.shape[1] == net.in_channels else images.mean(1, keepdim=True)
    out = []
    with torch.no_grad():
        for i in range(0, len(imgs), batch):
            out.append(net.residual_map(imgs[i:i + batch], mask_ratio=ratio, n_masks=masks, stats=stats)[:, 0])
    return torch.cat(out).numpy()


def baseline_maps(images: torch.Tensor) -> dict[str, np.ndarray]:
    """Detectors that learn nothing: darkness and colour distance from the image mean."""
    x = images.numpy()
    gray = 0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]
    dist = np.sqrt(((x - x.mean(axis=(2, 3), keepdims=True)) ** 2).sum(axis=1))
    return {"darkness (1 - luminance)": 1.0 - gray, "colour distance from the image mean": dist}


def score(maps: np.ndarray, masks: np.ndarray, large: float) -> dict[str, Any]:
    """Per-image AUROC summary; images without lesion or background are skipped."""
    aucs, fracs = [], []
    for r, m in zip(maps, masks, strict=True):
        if 0 < m.sum() < m.size:
            aucs.append(auroc(r.ravel(), m.ravel()))
            fracs.append(float(m.mean()))
    a, f = np.array(aucs), np.array(fracs)
    big = f >= large

    def mean(x: np.ndarray) -> float | None:
        return float(x.mean()) if x.size else None

    return {"images": int(a.size), "mean_auroc": mean(a), "median_auroc": float(np.median(a)),
            "std_auroc": float(a.std(ddof=1)) if a.size > 1 else None,
            "small_lesions": {"images": int((~big).sum()), "mean_auroc": mean(a[~big])},
            "large_lesions": {"images": int(big.sum()), "mean_auroc": mean(a[big])},
            "per_image": [round(v, 4) for v in a.tolist()]}


def load_maes(specs: list[str]) -> list[tuple[str, MAE, dict[str, Any]]]:
    """``LABEL=PATH`` specs -> (label, trained MAE, options), plus a random MAE per architecture."""
    nets: list[tuple[str, MAE, dict[str, Any]]] = []
    archs: dict[str, dict[str, Any]] = {}
    for spec in specs:
        label, _, path = spec.rpartition("=")
        state, opts = read_mae_file(path)
        net = MAE(**opts)
        net.load_state_dict(state)
        nets.append((label or path, net, opts))
        archs.setdefault(json.dumps({k: v for k, v in sorted(opts.items()) if k != "img_size"}), opts)
    randoms = []
    for opts in archs.values():
        torch.manual_seed(0)
        target = "norm-pix" if opts.get("norm_pix_loss", True) else "pixel"
        randoms.append((f"0 epochs (random init), {target} target, patch {opts['patch_size']}", MAE(**opts), opts))
    return randoms + nets


def write_pictures(path: Path, images: torch.Tensor, masks: np.ndarray,
                   maps: dict[str, np.ndarray], rows: int = 4) -> None:
    """Image | ground truth | each residual map, for images at spread lesion fractions."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from medattn.utils.figures import save_figure_png

    order = np.argsort(masks.reshape(len(masks), -1).mean(1))
    ids = [int(order[i]) for i in dict.fromkeys(np.linspace(0, len(order) - 1, rows).round().astype(int).tolist())]
    cols = 2 + len(maps)
    fig, axes = plt.subplots(len(ids), cols, figsize=(1.9 * cols, 1.9 * len(ids)), squeeze=False)
    for row, i in enumerate(ids):
        panels = [(images[i].permute(1, 2, 0).numpy(), f"PH2 #{i}", None),
                  (masks[i], f"lesion {masks[i].mean():.0%}", "gray")]
        for label, m in maps.items():
            lo, hi = np.percentile(m[i], (1, 99))
            a = auroc(m[i].ravel(), masks[i].ravel()) if 0 < masks[i].sum() < masks[i].size else float("nan")
            panels.append((np.clip((m[i] - lo) / max(hi - lo, 1e-8), 0, 1), f"{label}\nAUROC {a:.2f}", "magma"))
        for col, (img, title, cmap) in enumerate(panels):
            axes[row][col].imshow(img, cmap=cmap)
            axes[row][col].set_title(title, fontsize=5)
            axes[row][col].axis("off")
    fig.tight_layout(pad=0.3)
    save_figure_png(fig, path)


def _floats(text: str) -> list[float]:
    return [float(t) for t in text.split(",") if t]


def markdown(rows: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    def f(v: float | None) -> str:
        return "-" if v is None else f"{v:.3f}"

    lines = [f"PH2, {meta['images']} images, {meta['masks']} complementary masking passes; per-image AUROC of the "
             f"residual map for lesion pixels. Large lesions: at least {meta['large']:.0%} of the image.", "",
             "| detector | size | mask ratio | de-normalisation | images | mean AUROC | median | "
             f"small lesions | large lesions ({rows[0]['large_lesions']['images'] if rows else 0}) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['detector']} | {r['size']} | {r.get('mask_ratio', '-')} | {r.get('stats', '-')} | "
                     f"{r['images']} | {f(r['mean_auroc'])} | {f(r['median_auroc'])} | "
                     f"{f(r['small_lesions']['mean_auroc'])} | {f(r['large_lesions']['mean_auroc'])} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mae", action="append", required=True,
                    help="[LABEL=]PATH of MAE weights from `medattn pretrain` (repeatable)")
    ap.add_argument("--sizes", default="128", help="comma list: images are resized to SIZE x SIZE")
    ap.add_argument("--mask-ratios", default="0.75", help="comma list of masking ratios of the residual passes")
    ap.add_argument("--stats", default="context,patch",
                    help="de-normalisations of norm-pix MAEs (context, patch; see MAE.reconstruct)")
    ap.add_argument("--masks", type=int, default=4, help="complementary masking passes")
    ap.add_argument("--large", type=float, default=0.5, help="lesion fraction from which a lesion counts as large")
    ap.add_argument("--limit", type=int, default=None, help="first N PH2 images only (smoke runs)")
    ap.add_argument("--pictures", type=Path, default=None, help="write residual maps of a few images to this PNG")
    ap.add_argument("--data", type=Path, default=None, help="datasets folder (default ../shared/data)")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    ap.add_argument("--tag", default="grcsf_residual_auroc", help="output file name (without suffix)")
    args = ap.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    root = args.data or shared_data_root()
    if root is None:
        raise SystemExit("error: ../shared/data not found; pass --data")
    maes = load_maes(args.mae)
    sizes = [int(s) for s in _floats(args.sizes)]
    stats_list = [s for s in args.stats.split(",") if s]
    rows: list[dict[str, Any]] = []
    pictures: dict[str, np.ndarray] = {}
    t0 = time.perf_counter()
    for size in sizes:
        images, masks = load_images(root, size, args.limit)
        for name, m in baseline_maps(images).items():
            rows.append({"detector": name, "size": size, **score(m, masks, args.large)})
            if size == sizes[0] and name.startswith("darkness"):
                pictures[name] = m
        for label, net, opts in maes:
            if size % net.patch_size:
                continue
            for ratio in _floats(args.mask_ratios):
                for stats in (stats_list if opts.get("norm_pix_loss", True) else ["-"]):
                    maps = residual_maps(net, images, ratio, args.masks, "context" if stats == "-" else stats)
                    rows.append({"detector": label, "size": size, "mask_ratio": ratio, "stats": stats,
                                 "options": opts, **score(maps, masks, args.large)})
                    print(f"{label} | {size} | ratio {ratio} | {stats}: mean AUROC {rows[-1]['mean_auroc']:.3f}"
                          f" ({time.perf_counter() - t0:.0f} s)", flush=True)
                    if size == sizes[0] and ratio == _floats(args.mask_ratios)[0] and stats in ("-", "context"):
                        pictures[label] = maps
        if size == sizes[0] and args.pictures:
            write_pictures(args.pictures, images, masks, pictures)
            print(f"pictures: {args.pictures}")
    meta = {"dataset": "ph2", "images": rows[0]["images"] if rows else 0, "masks": args.masks,
            "large": args.large, "limit": args.limit, "cpus": os.cpu_count(),
            "threads": torch.get_num_threads(), "seconds": round(time.perf_counter() - t0, 1),
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "mae": args.mae}
    atomic_write_text(args.out / f"{args.tag}.json", json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")
    md = markdown(rows, meta)
    atomic_write_text(args.out / f"{args.tag}.md", md)
    print(md)


if __name__ == "__main__":
    main()
