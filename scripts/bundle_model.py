"""Ship a trained run's weights with the package: ``src/medattn/weights/<name>.safetensors`` + card.

    .venv/bin/python scripts/bundle_model.py runs/polyp-bsanet bsanet-polyp
    .venv/bin/python scripts/bundle_model.py runs/ph2-hlfnet-pretrained-f0 hlfnet-skin --checkpoint last
    .venv/bin/python scripts/bundle_model.py runs/cawe_mnv2 cawe-lesion --command "python benchmarks/enhance_cawe.py ..."
    .venv/bin/python scripts/bundle_model.py runs/ldct-cadn_small cadn-ldct --results benchmarks/results/ldct_eval.json

The card (``<name>.json``) holds the model, its options (options naming files outside the
package, such as ``encoder_pretrained``, are set to None: the trained weights replace
them), task, input size, how a segmentation model is meant to be run (``inference``:
input size, TTA, mask threshold, zoom; the run's card's, ``--tta/--no-tta``, ``--threshold``
and ``--zoom`` override them), data, split, epochs, wall-clock, hardware, the test metrics
written by ``benchmarks/polyp_results.py`` / ``benchmarks/ph2_results.py`` (never the
validation scores), the command that trained the run (the last ``start <run name>: `` line
of the ``runs/queue*.log`` files), the version and the SHA-256 of the weights. Weights are stored in fp32 unless ``--fp16`` is
given and the test metrics are unchanged. The bundle is then checked in a fresh Python
process: ``medattn.inference.load_model(name)`` must predict what the run's checkpoint
predicts on ``samples/kvasir`` (max abs difference of the probabilities <= 1e-5).

Runs of the enhancement benchmarks (a ``lesion_classifier`` from ``benchmarks/enhance_cawe.py``,
a ``colorizer`` from ``benchmarks/enhance_colorize.py``) have no ``config.yaml``: their card is
built from the run's own card, the benchmark's results JSON (held-out metrics: CAWE pointing
game / energy, colorization L1 / PSNR against gray) and the command that trained the run
(``--command``, or the ``command`` the benchmark recorded in its results). The command is
parsed with the benchmark's own argument parser and must agree with the results (same run
folder, same settings, same training history), so the card cannot pair a model with another
run's numbers. The fresh-process check compares the raw network outputs on ``samples/kvasir``.

Denoisers (engine runs whose card has task ``denoising``, ``data.kind: ldct``): the test metrics
are the held-out rows of ``benchmarks/ldct_eval.py`` (``--results``), the row found by the
SHA-256 of the weights being bundled (the evaluation records each network's weights file); no
matching row, no bundle. The card copies that row's summary and per-slice PSNR / SSIM / RMSE and
the low-dose input's numbers on the same slices, and describes the CT volumes by role (split by
volume). The queue's command must train into the run folder. The fresh-process check compares
the raw outputs on a simulated quarter-dose abdominal phantom
(:func:`medattn.denoise.simulate.abdomen_phantom`, HU / 1000).
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import inspect
import json
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from medattn.inference import LoadedModel, load_model
from medattn.inference.loading import card_inference
from medattn.models.hub import WEIGHTS_DIR, save_bundled
from medattn.utils.fileio import atomic_write_text, file_sha256

#: builder options that name files outside the package; the trained weights replace them
FILE_OPTIONS = ("encoder_pretrained", "swin_pretrained", "pretrained_encoder", "mae", "pretrained")
HARDWARE = "2-core CPU, no GPU"
MAX_MB = 30.0

CHECK = """
import json, sys, numpy as np
from medattn.inference import load_model, predict_batch
from medattn.io import read_rgb
from pathlib import Path
name, ref = sys.argv[1], sys.argv[2]
imgs = [read_rgb(p) for p in sorted(Path("samples/kvasir/images").iterdir())]
a = predict_batch(load_model(name), imgs, tta=False, zoom=1)  # the weights, whatever the cards' settings
b = predict_batch(load_model(ref), imgs, tta=False, zoom=1)
print(json.dumps(max(float(np.abs(x.prob - y.prob).max()) for x, y in zip(a, b))))
"""

#: for models that do not segment: the raw outputs on the samples, gray (or RGB) at 128 x 128
CHECK_OUTPUTS = """
import json, sys, numpy as np, torch
from pathlib import Path
from medattn.enhance._images import resize
from medattn.inference import load_model
from medattn.io import read_rgb, rgb_to_gray
name, ref = sys.argv[1], sys.argv[2]
a, b = load_model(name), load_model(ref)
imgs = [read_rgb(p) for p in sorted(Path("samples/kvasir/images").iterdir())]
imgs = [resize(i if a.in_channels == 3 else rgb_to_gray(i), (128, 128)) for i in imgs]
x = torch.from_numpy(np.stack(imgs)).float().div(255)
x = x[:, None] if x.ndim == 3 else x.permute(0, 3, 1, 2)
with torch.no_grad():
    print(json.dumps(float((a.model(x) - b.model(x)).abs().max())))
"""

#: denoisers: raw outputs on a simulated quarter-dose abdominal phantom in the networks' units (HU / 1000)
CHECK_DENOISER = """
import json, sys, torch
from medattn.denoise.simulate import PHANTOM_SPACING_MM, abdomen_phantom, simulate_low_dose
from medattn.inference import load_model
from medattn.models.ldct_denoisers import HU_SCALE
name, ref = sys.argv[1], sys.argv[2]
low = simulate_low_dose(abdomen_phantom(), 0.25, pixel_size_mm=PHANTOM_SPACING_MM, seed=0)
x = torch.from_numpy(low)[None, None] / HU_SCALE
with torch.no_grad():
    print(json.dumps(float((load_model(name).model(x) - load_model(ref).model(x)).abs().max())))
"""

#: the held-out evaluation of the denoisers (``benchmarks/ldct_eval.py``)
LDCT_RESULTS = Path("benchmarks/results/ldct_eval.json")

#: registry model -> the benchmark script that trains and scores it (no `medattn train` run)
ENHANCEMENT_BENCHMARKS = {"lesion_classifier": "benchmarks/enhance_cawe.py",
                          "colorizer": "benchmarks/enhance_colorize.py"}


def queue_lines(run: Path, marker: str) -> list[str]:
    """What follows ``marker`` on the lines of the queue logs beside ``run`` (``queue*.log``, oldest file first)."""
    found = []
    for log in sorted(run.parent.glob("queue*.log"), key=lambda p: (p.stat().st_mtime, p.name)):
        for line in log.read_text(encoding="utf-8").splitlines():
            if marker in line:
                found.append(line.split(marker, 1)[1].strip())
    return found


def train_command(run: Path) -> str | None:
    """The `medattn train` command line the queue last logged for this run (``runs/queue*.log``)."""
    starts = queue_lines(run, f"start {run.name}: ")
    found = starts[-1] if starts else None
    if found and "'" not in found and "\\" not in found:
        # the queue logged the words unquoted: quote each --set value so the line can be pasted
        head, *sets = found.split(" --set ")
        found = " --set ".join([head, *(shlex.quote(v) for v in sets)])
    return found


def test_metrics(run: Path, checkpoint: str) -> dict[str, Any]:
    """Test-set metrics of the run from the evaluation scripts' caches."""
    polyp = run / "polyp_eval.json"
    if polyp.is_file():
        doc = json.loads(polyp.read_text(encoding="utf-8"))
        return {"source": f"benchmarks/polyp_results.py {run}", "checkpoint": "best",
                **({"inference": doc["inference"]} if doc.get("inference") else {}),
                "test": {part: {k: round(v, 4) for k, v in m.items()} for part, m in doc["parts"].items()}}
    ph2 = run / f"ph2_eval_{checkpoint}.json"
    if ph2.is_file():
        doc = json.loads(ph2.read_text(encoding="utf-8"))
        out: dict[str, Any] = {"source": "benchmarks/ph2_results.py", "checkpoint": checkpoint,
                               "held_out_fold": doc["fold"], "held_out_images": doc["count"],
                               "test": {k: round(v, 4) for k, v in doc["mean"].items()}}
        summary = Path("benchmarks/results/ph2_results.json")
        if summary.is_file():
            arms = json.loads(summary.read_text(encoding="utf-8"))
            for label, folds in arms["folds"].items():
                if any(Path(f["run"]).resolve() == run.resolve() for f in folds):
                    out["cross_validation"] = {"arm": label, **arms["arms"][label]}
        return out
    raise SystemExit(f"error: {run}: no polyp_eval.json or ph2_eval_{checkpoint}.json; run the evaluation first")


def rel(path: str | Path) -> str:
    """A path relative to the repository root when it lies inside it or beside it (../shared)."""
    import os

    r = os.path.relpath(Path(path).resolve(), Path.cwd())
    return r if not r.startswith("../..") else str(path)


def describe_split(run: Path, cfg: dict[str, Any]) -> dict[str, Any]:
    """Counts per part; for a k-fold run also the held-out (``val``) image ids, for a split with
    ``test*`` parts each test part's image ids, so the card's held-out metrics can be recomputed
    without the run folder."""
    doc = json.loads((run / "split.json").read_text(encoding="utf-8"))
    out = {"counts": doc.get("counts"), "meta": doc.get("meta"), "file": rel(run / "split.json")}
    if cfg["data"]["split"]["kind"] == "kfold":
        out["held_out_ids"] = [s["id"] for s in doc["splits"]["val"]]
    tests = {part: [s["id"] for s in samples] for part, samples in doc["splits"].items() if part.startswith("test")}
    if tests:
        out["test_ids"] = tests
    return out


def history_totals(run: Path) -> tuple[float, int]:
    """(training seconds summed over the epochs, epochs) of an engine run's ``history.csv``."""
    seconds, epochs = 0.0, 0
    with (run / "history.csv").open(encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            seconds, epochs = seconds + float(row["seconds"]), max(epochs, int(row["epoch"]))
    return seconds, epochs


def engine_training(cfg: dict[str, Any]) -> dict[str, Any]:
    """The ``training`` card field of an engine run from its ``config.yaml``."""
    return {"optim": cfg["optim"], "schedule": cfg["schedule"], "loss": cfg["loss"],
            "batch_size": cfg["train"]["batch_size"], "precision": cfg["train"]["precision"],
            "seed": cfg["train"]["seed"], "initial_options": cfg["model"]["options"]}


def inference_settings(run: Path, args: argparse.Namespace, run_card: dict[str, Any]) -> dict[str, Any]:
    """The bundle's ``inference`` block: the run card's (``medattn train`` writes it; older runs: no TTA,
    threshold 0.5, zoom 1), ``--tta/--no-tta``, ``--threshold`` and ``--zoom`` overriding. Says so when an override departs from
    the settings the run's test metrics were measured with (``benchmarks/polyp_results.py`` and
    ``benchmarks/ph2_results.py`` run a model as its card says)."""
    run_settings = card_inference(run_card, str(run / f"{args.checkpoint}.json"))
    chosen = {"input_size": run_settings["input_size"] or run_card["input_size"],
              "tta": run_settings["tta"] if args.tta is None else args.tta,
              "threshold": run_settings["threshold"] if args.threshold is None else args.threshold,
              "zoom": run_settings["zoom"] if args.zoom is None else args.zoom}
    for key in ("tta", "threshold", "zoom"):
        if chosen[key] != run_settings[key]:
            print(f"note: inference.{key} = {chosen[key]} but the run's card says {run_settings[key]}: the card's "
                  f"test metrics were measured with the run's setting; evaluate again before shipping")
    return chosen


def inference_flags(args: argparse.Namespace) -> str:
    """The ``--tta/--no-tta``, ``--threshold`` and ``--zoom`` words of a bundle command ('' when not given)."""
    tta = "" if args.tta is None else (" --tta" if args.tta else " --no-tta")
    return (tta + ("" if args.threshold is None else f" --threshold {args.threshold:g}")
            + ("" if args.zoom is None else f" --zoom {args.zoom}"))


def segmentation_card(run: Path, args: argparse.Namespace, run_card: dict[str, Any]) -> dict[str, Any]:
    """Card fields of a `medattn train` run (config.yaml, history.csv, split.json, evaluation caches)."""
    cfg = yaml.safe_load((run / "config.yaml").read_text(encoding="utf-8"))
    seconds, epochs = history_totals(run)
    return {
        "task": run_card.get("task", "segmentation"),
        "input_size": run_card["input_size"],
        "inference": inference_settings(run, args, run_card),
        "data": {"root": [rel(r) for r in cfg["data"]["root"]],
                 "split": {**cfg["data"]["split"], **({"file": rel(cfg["data"]["split"]["file"])}
                                                      if cfg["data"]["split"].get("file") else {})},
                 "augment": cfg["data"]["augment"],
                 "in_channels": cfg["data"]["in_channels"]},
        "split": describe_split(run, cfg),
        "epochs": epochs,
        "checkpoint": {"tag": args.checkpoint, "epoch": run_card.get("epoch"),
                       "selected_on": "val_dice (validation part of the split)" if args.checkpoint == "best"
                       else "none (last epoch)"},
        "training": engine_training(cfg),
        "wall_clock_seconds": round(seconds, 1),
        "hardware": f"{HARDWARE} ({platform.processor() or platform.machine()}, shared with other jobs)",
        "metrics": test_metrics(run, args.checkpoint),
        "command": train_command(run),
        "bundled_with": f"python scripts/bundle_model.py {run} {args.name} --checkpoint {args.checkpoint}"
                        + (" --fp16" if args.fp16 else "") + inference_flags(args),
        "pretraining_commands": {k: train_command(Path(v).parent) for k, v in cfg["model"]["options"].items()
                                 if k in FILE_OPTIONS and isinstance(v, str) and train_command(Path(v).parent)},
    }


def declarations(run_card: dict[str, Any], previous: Path) -> dict[str, Any]:
    """``modality`` and ``intended_use``: from the run's card (``medattn train`` writes ``modality``), else kept
    from the card being replaced, so re-bundling a model never drops what it declares."""
    old = read_json(previous) if previous.is_file() else {}
    return {k: run_card.get(k, old.get(k)) for k in ("modality", "intended_use") if k in run_card or k in old}


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SystemExit(f"error: {path}: cannot read ({exc})") from None


def benchmark_args(command: str, script: str) -> argparse.Namespace:
    """The arguments of ``command`` as ``script``'s own parser (its ``build_parser``) reads them."""
    words = shlex.split(command)
    at = [i for i, w in enumerate(words) if Path(w).as_posix().endswith(script)]
    if not at:
        raise SystemExit(f"error: the command does not run {script}: {command}")
    path = Path(__file__).resolve().parent.parent / script
    spec = importlib.util.spec_from_file_location(path.stem, path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"error: {path}: cannot import the benchmark")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.build_parser().parse_args(words[at[0] + 1:])


def agree(what: str, recorded: Any, expected: Any, source: Path) -> None:
    """Stop when the results file and the run / command disagree (the card would mix two runs)."""
    if recorded != expected:
        raise SystemExit(f"error: {source}: {what} is {recorded!r} there but {expected!r} for this run/command; "
                         "these results were not produced by this run")


def check_run_folder(run: Path, bargs: argparse.Namespace, results: dict[str, Any], source: Path) -> None:
    """The command must train into ``run`` and (when the results record it) the results must come from it."""
    if Path(bargs.run).resolve() != run.resolve():
        raise SystemExit(f"error: the command trains into {bargs.run} (its --run), not {run}")
    if "run" in results:
        agree("the run folder", Path(results["run"]).resolve(), run.resolve(), source)


def recorded_command(run_card: dict[str, Any]) -> str | None:
    """The command an enhancement benchmark recorded in its default results file (newer runs only)."""
    name = (f"enhance_cawe_{run_card['options']['backbone']}.json" if run_card["model"] == "lesion_classifier"
            else "enhance_colorize.json")
    path = Path("benchmarks/results") / name
    return read_json(path).get("command") if path.is_file() else None


def _rounded(d: dict[str, Any]) -> dict[str, Any]:
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in d.items()}


def classifier_card(run: Path, args: argparse.Namespace, run_card: dict[str, Any], command: str) -> dict[str, Any]:
    """Card fields of a lesion classifier trained by benchmarks/enhance_cawe.py (CAWE scores on held-out images)."""
    from medattn.enhance.classifier import POS_FRACTION, train_classifier, weak_label_split

    bargs = benchmark_args(command, ENHANCEMENT_BENCHMARKS["lesion_classifier"])
    source = Path(bargs.out) / f"enhance_cawe_{bargs.backbone}.json"
    res = read_json(source)
    clf = res["classifier"]
    check_run_folder(run, bargs, res, source)
    for key in ("backbone", "lr", "crop", "pretrained"):
        agree(f"classifier.{key}", clf[key], getattr(bargs, key), source)
    agree("classifier.width", clf["width"], bargs.width if bargs.backbone == "resnet18" else None, source)
    agree("the training history", res["history"], run_card["history"], source)
    agree("the best epoch", clf["best_epoch"], run_card["epoch"], source)
    if bargs.data is None:
        raise SystemExit("error: ../shared/data is needed to describe the split (set MEDATTN_DATA)")
    parts = weak_label_split(bargs.data, bargs.limit, bargs.seed)
    defaults = inspect.signature(train_classifier).parameters
    limit_s = bargs.minutes * 60
    return {
        "task": "classification",
        "input_size": run_card["input_size"],
        "whole_image_size": res["whole_image_size"],
        "data": {"root": [rel(Path(bargs.data) / d) for d in ("kvasir-seg", "cvc-clinicdb", "ph2")],
                 "in_channels": run_card["options"]["in_channels"],
                 "labels": "image-level only: a 3x3 lattice of square crops of half the image's short side; "
                           f"lesion when the mask covers >= {POS_FRACTION:.0%} of a crop, background when it holds "
                           "no mask pixel, dropped in between (medattn.enhance.classifier.crops_of)",
                 "crops": res["crops"],
                 "augment": ["horizontal and vertical flips", "90-degree turns", "brightness gain in [0.9, 1.1]"]},
        "split": {"protocol": "medattn.enhance.classifier.weak_label_split", "seed": bargs.seed, "limit": bargs.limit,
                  "train_pool": "PraNet training split of Kvasir-SEG + CVC-ClinicDB and a seeded 80 % of PH2; "
                                "`limit` images drawn from it, 10 % of them (by image) for early stopping",
                  "held_out": "the PraNet test images (100 Kvasir-SEG, 62 CVC-ClinicDB) and the other 20 % of PH2",
                  "counts": {k: len(v) for k, v in parts.items()},
                  "held_out_ph2_ids": [s.id for s in parts["test_ph2"]]},
        "epochs": clf["epochs_run"],
        "checkpoint": {"tag": args.checkpoint, "epoch": run_card["epoch"],
                       "selected_on": "lowest validation loss on the crops of the early-stopping images"},
        "training": {"optimizer": "Adam", "lr": bargs.lr, "batch_size": defaults["batch"].default,
                     "patience": defaults["patience"].default, "precision": "fp32", "seed": bargs.seed,
                     "loss": "BCE, lesion crops weighted by background / lesion count",
                     "epochs_requested": bargs.epochs, "time_limit_minutes": bargs.minutes,
                     "initial_options": {"pretrained": bargs.pretrained},
                     **({"note": f"the {bargs.minutes:g}-minute limit was reached ({clf['train_seconds']} s): "
                                 "the last epoch may be partial"} if clf["train_seconds"] > limit_s else {})},
        "wall_clock_seconds": clf["train_seconds"],
        "hardware": f"{HARDWARE} ({res['machine']}, shared with other jobs)",
        "metrics": {"source": rel(source), "checkpoint": args.checkpoint,
                    "definitions": {"pointing": "share of held-out images where the CAWE map's maximum lies in the "
                                                "lesion mask (pointing game)",
                                    "energy": "share of the CAWE map's mass inside the mask",
                                    "*_chance": "the same for a uniform map: the mask's area fraction",
                                    "crop_auc": "ROC AUC of the lesion probability on the held-out images' crops"},
                    "test": {"crop_auc": round(res["test_crop_auc"], 4),
                             "crop_accuracy": round(res["test_crop_accuracy"], 4),
                             "crops": res["crops"]["test"], "whole_image_size": res["whole_image_size"],
                             "localisation": {k: _rounded(v) for k, v in res["localisation"].items()}}},
        "command": command,
    }


def colorizer_card(run: Path, args: argparse.Namespace, run_card: dict[str, Any], command: str) -> dict[str, Any]:
    """Card fields of a colorization generator trained by benchmarks/enhance_colorize.py (L1 / PSNR vs gray)."""
    from medattn.enhance.colorize import colour_test_samples, colour_training_paths, train_gan

    bargs = benchmark_args(command, ENHANCEMENT_BENCHMARKS["colorizer"])
    source = Path(bargs.out) / "enhance_colorize.json"
    res = read_json(source)
    check_run_folder(run, bargs, res, source)
    agree("size", res["size"], bargs.size, source)
    agree("steps", res["steps"], run_card["steps"], source)
    agree("the training history", res["history"], run_card["history"], source)
    if bargs.data is None:
        raise SystemExit("error: ../shared/data is needed to describe the training images (set MEDATTN_DATA)")
    paths = colour_training_paths(bargs.data, bargs.limit, bargs.seed)
    agree("train_images", res["train_images"], len(paths), source)
    isic = sum("isic2017-unlabeled" in Path(p).parts for p in paths)
    defaults = inspect.signature(train_gan).parameters
    steps, limit_s = res["steps"], bargs.minutes * 60
    if "train_seconds" in res:
        seconds, note = res["train_seconds"], None
    elif steps < bargs.steps:  # stopped by the time limit, checked after each step
        seconds = limit_s
        note = (f"older results without train_seconds: the {bargs.minutes:g}-minute limit stopped training at "
                f"step {steps} (limit checked after each step; {res['history'][-1]['seconds']:.1f} s at step "
                f"{res['history'][-1]['step']})")
    else:
        seconds, note = res["history"][-1]["seconds"], "time of the last logged step"
    held = colour_test_samples(bargs.data)
    agree("held_out_images", res["held_out_images"], len(held), source)
    return {
        "task": "colorization",
        "input_size": [bargs.size, bargs.size],
        "data": {"root": [rel(Path(bargs.data) / d) for d in ("isic2017-unlabeled", "kvasir-seg", "cvc-clinicdb")],
                 "in_channels": 1,
                 "images": {"total": len(paths), "isic2017-unlabeled (dermoscopy)": isic,
                            "PraNet training split (colonoscopy)": len(paths) - isic},
                 "preprocessing": f"centre-cropped to a square, resized to {bargs.size} px; input = gray "
                                  "(ITU-R 601 weights), target = the colour image",
                 "augment": ["horizontal flip"]},
        "split": {"protocol": "medattn.enhance.colorize.colour_training_paths / colour_test_samples",
                  "seed": bargs.seed, "limit": bargs.limit,
                  "held_out": "the first 40 Kvasir-SEG and the first 24 CVC-ClinicDB PraNet test images",
                  "held_out_ids": [s.id for s in held]},
        "epochs": round(steps * bargs.batch / len(paths), 2),
        "steps": steps,
        "checkpoint": {"tag": args.checkpoint, "step": steps, "selected_on": "none (last step)"},
        "training": {"optimizer": "Adam, betas (0, 0.9)", "lr_g": defaults["lr_g"].default,
                     "lr_d": defaults["lr_g"].default * defaults["ttur"].default, "batch_size": bargs.batch,
                     "precision": "bf16 autocast" if defaults["bf16"].default else "fp32", "seed": bargs.seed,
                     "loss": "eqs. 3-6: L1 + discriminator feature matching + 0.5 adversarial; D: BCE",
                     "steps_requested": bargs.steps, "time_limit_minutes": bargs.minutes,
                     "epochs_meaning": "steps x batch / training images (images are drawn with replacement)"},
        "wall_clock_seconds": seconds,
        **({"wall_clock_note": note} if note else {}),
        "hardware": f"{HARDWARE} ({platform.processor() or platform.machine()}, shared with other jobs)",
        "metrics": {"source": rel(source), "checkpoint": args.checkpoint,
                    "definitions": {"l1_*": "mean |result - colour original| on [0, 1] over the held-out images",
                                    "psnr_*": "mean per-image PSNR (dB) against the colour original",
                                    "*_gray": "the gray input replicated to RGB (the baseline)"},
                    "test": {"held_out_images": res["held_out_images"], "image_size": bargs.size * 2,
                             "network_size": bargs.size,
                             **_rounded({k: res[k] for k in ("l1_colorized", "l1_gray", "psnr_colorized", "psnr_gray")})}},
        "command": command,
    }


def ldct_metrics(weights: Path, results: Path, run_card: dict[str, Any], checkpoint: str,
                 row_label: str | None = None) -> dict[str, Any]:
    """The held-out metrics of ``weights`` from a ``benchmarks/ldct_eval.py`` results JSON.

    The row is the one whose recorded weights have the SHA-256 of ``weights``; none (for example
    an evaluation of another run, or of this run before it trained further) stops the bundling.
    """
    res = read_json(results)
    digest = file_sha256(weights)
    summary, per_slice = res.get("summary", {}), res.get("per_slice", {})
    labels = [k for k, v in summary.items() if v.get("weights", {}).get("sha256") == digest]
    if not labels:
        same_path = [k for k, v in summary.items()
                     if v.get("weights") and Path(v["weights"]["path"]).resolve() == weights.resolve()]
        why = (f"row(s) {same_path} evaluated {weights} when it held other weights (it changed since); rerun the "
               "evaluation" if same_path else
               f"no row was evaluated on these weights; run `python benchmarks/ldct_eval.py --run LABEL={weights} ...`")
        raise SystemExit(f"error: {results}: no held-out results for {weights} (sha256 {digest[:16]}...): {why}")
    if row_label is not None:
        if row_label not in labels:
            raise SystemExit(f"error: {results}: row {row_label!r} is not one of the rows of these weights {labels}")
        labels = [row_label]
    elif len(labels) > 1:
        raise SystemExit(f"error: {results}: rows {labels} all evaluated these weights; choose one with --row")
    label = labels[0]
    real = res["dose"] == "real"
    if not real:
        agree("dose", res["dose"], run_card["simulation"]["dose"], results)
    base = "low-dose input"
    if base not in summary or len(per_slice.get(label, [])) != len(per_slice.get(base, [])):
        raise SystemExit(f"error: {results}: the low-dose input row is missing or measured on other slices than {label!r}")

    def scores(d: dict[str, Any]) -> dict[str, float]:
        return {k: round(float(d[k]), 4) for k in ("psnr", "ssim", "rmse_hu", "rmse_body_hu") if k in d}

    row = summary[label]
    keep = float(row.get("keep_noise") or 0.0)
    return {
        "keep_noise": keep, "tta": bool(row.get("tta", False)),
        "source": rel(results), "row": label, "checkpoint": checkpoint, "weights_sha256": digest,
        "definitions": {"psnr": "dB in the HU window {center:g}/{width:g} (both images clipped to it, its width as "
                                "the data range), mean over the held-out slices".format(**res["window"]),
                        "ssim": "SSIM in the same window", "rmse_hu": "RMSE in HU over the whole slice",
                        "rmse_body_hu": "RMSE in HU inside the body (normal-dose slice above -500 HU, holes filled)",
                        "low_dose_input": "the same scores of the " + ("real quarter-dose" if real else
                                                                         "simulated low-dose") + " input (no denoising)",
                        "per_slice": "each held-out slice's scores, input_* for the low-dose input"},
        "dose": res["dose"], "window": res["window"], "test_volume": rel(res["test_volume"]),
        **({"spacing_mm": res.get("spacing_mm"), "resampling": res.get("resampling"),
            "test_kind": "real AAPM/Mayo quarter-dose slices against their full-dose slices"} if real else {}),
        "test": {"slices": len(per_slice[label]), **scores(row),
                 "psnr_gain_db": round(row["psnr"] - summary[base]["psnr"], 4),
                 "seconds_per_slice": round(row["seconds"], 3), "machine": res.get("machine"),
                 "low_dose_input": scores(summary[base])},
        "per_slice": [{"id": r["id"], **scores(r), **{f"input_{k}": v for k, v in scores(b).items()}}
                      for r, b in zip(per_slice[label], per_slice[base], strict=True)],
    }


def describe_ct_volumes(options: Any, names: list[str]) -> dict[str, Any]:
    """Where each named CT volume comes from (CT_SOURCES or the config's own ``volumes``), with its role."""
    from medattn.denoise.data import CT_SOURCES
    from medattn.utils.paths import shared_data_root

    out: dict[str, Any] = {}
    if options.volumes is not None:
        for v in options.volumes:
            name = v.name or v.path.name
            if name in names:
                out[name] = {"path": rel(v.path), "role": v.role, "anatomy": v.anatomy, "group": v.group or name}
        return out
    root = options.data_root or shared_data_root() or Path("../shared/data")
    for name, where, group, anatomy, role in CT_SOURCES:
        if name in names:
            path = where if where.startswith("pydicom-data:") else rel(Path(root) / where)
            out[name] = {"path": path, "role": role, "anatomy": anatomy, "group": group}
    return out


def command_out(command: str | None) -> Path | None:
    """The ``--out`` folder of a ``medattn train`` command line (None when it names none)."""
    words = shlex.split(command or "")
    return Path(words[words.index("--out") + 1]) if "--out" in words[:-1] else None


def denoiser_inference(metrics: dict[str, Any]) -> dict[str, Any]:
    """A denoiser card's ``inference`` block: the noise kept and the self-ensemble its held-out row used."""
    block: dict[str, Any] = {
        "keep_noise": metrics["keep_noise"],
        "keep_noise_note": "medattn denoise returns denoised + keep_noise x (input - denoised): for a scan at dose "
                           "fraction d the least-squares estimate of the normal-dose image is keep_noise = d (0.25: "
                           "quarter dose), with its noise texture; the held-out metrics were measured so"}
    if metrics["tta"]:
        block.update(tta=True, tta_note="8-fold self-ensemble (rotations and mirror images, outputs averaged); the "
                                        "held-out metrics were measured so; medattn denoise --no-tta is 8x faster")
    return block


def denoiser_card(run: Path, args: argparse.Namespace, run_card: dict[str, Any]) -> dict[str, Any]:
    """Card fields of a `medattn train` denoiser run (``data.kind: ldct``) with its held-out LDCT evaluation."""
    from medattn.denoise.data import ldct_options

    cfg = yaml.safe_load((run / "config.yaml").read_text(encoding="utf-8"))
    o = ldct_options(cfg["data"]["options"])
    seconds, epochs = history_totals(run)
    metrics = ldct_metrics(run / f"{args.checkpoint}.safetensors", args.results, run_card, args.checkpoint, args.row)
    command = train_command(run)
    out = command_out(command)
    if out is not None and out.resolve() != run.resolve():
        raise SystemExit(f"error: the queue's command for {run.name} trains into {out}, not {run}: {command}")
    vols = run_card["volumes"]
    test = sorted({r["id"].split("/")[0] for r in metrics["per_slice"]})
    sources = describe_ct_volumes(o, [*vols["train"], *vols["val"], *test])
    groups = {part: {sources[n]["group"] for n in part_names if n in sources}
              for part, part_names in (("train", vols["train"]), ("val", vols["val"]), ("test", test))}
    shared = (groups["train"] | groups["val"]) & groups["test"]
    if shared:
        raise SystemExit(f"error: scans {sorted(shared)} were trained / validated on and are in the held-out test")
    queue = queue_lines(run, f"done {run.name} in ")
    init = cfg["model"].get("init")
    pretraining = None
    if init:
        parent = Path(init).parent
        pre = history_totals(parent) if (parent / "history.csv").is_file() else None
        pretraining = {"init": init, "command": train_command(parent), "epochs": pre[1] if pre else None,
                       "wall_clock_seconds": round(pre[0], 1) if pre else None}
    return {
        "task": "denoising",
        "input_size": run_card["input_size"],
        "input_size_note": "training patch side; the network is fully convolutional and denoises whole slices",
        "normalisation": run_card.get("normalisation"),
        "predicts": run_card.get("predicts"),
        "data": {"kind": "ldct", "in_channels": 1, "volumes": sources,
                 "simulation": {**run_card["simulation"], "method": (
                     "projection-domain noise insertion into the normal-dose slices (Poisson counts, FBP of the "
                     "noise; medattn.denoise.simulate.simulate_noise), normal-dose slices as targets"
                     if o.noise == "insert" else "projection domain (Poisson counts, FBP; "
                     "medattn.denoise.simulate), normal-dose slices as targets")},
                 "patch_size": o.patch_size, "patches_per_epoch": o.patches_per_epoch, "slice_step": o.slice_step,
                 "augment": ["random 90-degree turns", "horizontal flips"]
                 + ([f"pixel size drawn in {list(o.patch_spacing)} mm per patch"] if o.patch_spacing else [])},
        "split": {"protocol": "by volume: scans (groups) never straddle parts (medattn.denoise.data.CT_SOURCES roles)",
                  **({"train_names": o.train_names} if o.train_names else {"train_roles": o.train_roles}),
                  **({"val_pairs": rel(o.val_pairs), "note": "the real validation pairs give the validation curve and "
                      "are the held-out table; the shipped checkpoint is the last epoch (not chosen on them) unless "
                      "checkpoint.selected_on says otherwise. Unseen real slices judge the model outside the project"}
                     if o.val_pairs else {"val_roles": o.val_roles}),
                  "train": vols["train"], "val": vols["val"],
                  "test": test, "held_out_slices": [r["id"] for r in metrics["per_slice"]]},
        "epochs": epochs,
        "checkpoint": {"tag": args.checkpoint, "epoch": run_card.get("epoch"),
                       "selected_on": f"{cfg['train']['monitor']} (full slices of the validation "
                                      f"{'pairs' if o.val_pairs else 'volumes'})"
                       if args.checkpoint == "best" else "none (last epoch)"},
        "training": {**engine_training(cfg), "init": init},
        **({"pretraining": pretraining} if pretraining else {}),
        "wall_clock_seconds": round(seconds, 1),
        **({"wall_clock_note": f"sum of the epochs; the queue took {queue[-1]} including data preparation "
                               "(simulating the low-dose slices)"} if queue else {}),
        "hardware": f"{HARDWARE} ({platform.processor() or platform.machine()}, shared with other jobs)",
        "metrics": metrics,
        **({"inference": denoiser_inference(metrics)} if metrics["keep_noise"] or metrics["tta"] else {}),
        "command": command,
        "bundled_with": f"python scripts/bundle_model.py {run} {args.name} --checkpoint {args.checkpoint} "
                        f"--results {args.results}" + (f" --row {shlex.quote(args.row)}" if args.row else ""),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path, help="run folder of `medattn train` or of an enhancement benchmark")
    ap.add_argument("name", help="bundled name, e.g. bsanet-polyp")
    ap.add_argument("--checkpoint", choices=("best", "last"), default="best")
    ap.add_argument("--fp16", action="store_true", help="store weights as float16 (check the metrics!)")
    ap.add_argument("--folder", type=Path, default=WEIGHTS_DIR)
    ap.add_argument("--summary", required=True, help="one line shown by `medattn models` (what, data, budget)")
    ap.add_argument("--command", default=None,
                    help="enhancement runs: the benchmark command that trained the run (default: the one its "
                         "results recorded)")
    ap.add_argument("--row", default=None, help="denoisers: the results row to take when several evaluated the weights")
    ap.add_argument("--results", type=Path, default=LDCT_RESULTS,
                    help="denoisers: the benchmarks/ldct_eval.py results holding this run's weights")
    ap.add_argument("--tta", action=argparse.BooleanOptionalAction, default=None,
                    help="segmentation: ship with test-time augmentation on / off (default: the run's card)")
    ap.add_argument("--threshold", type=float, default=None,
                    help="segmentation: the mask threshold the bundle ships with (default: the run's card, else 0.5)")
    ap.add_argument("--zoom", type=int, default=None,
                    help="segmentation: the zoom (windows of 1/N of the image side fused with the whole frame; "
                         "1: off) the bundle ships with (default: the run's card, else 1)")
    args = ap.parse_args()
    if args.threshold is not None and not 0.0 <= args.threshold <= 1.0:
        ap.error(f"--threshold must be in [0, 1], got {args.threshold}")
    if args.zoom is not None and args.zoom < 1:
        ap.error(f"--zoom must be an integer >= 1 (1: no zoom windows), got {args.zoom}")

    run = args.run
    weights = run / f"{args.checkpoint}.safetensors"
    lm: LoadedModel = load_model(weights)
    run_card = json.loads((run / f"{args.checkpoint}.json").read_text(encoding="utf-8"))
    options = {k: (None if k in FILE_OPTIONS else v) for k, v in run_card["options"].items()}
    check = CHECK
    segmenting = run_card["model"] not in ENHANCEMENT_BENCHMARKS and run_card.get("task") != "denoising"
    if not segmenting and (args.tta is not None or args.threshold is not None or args.zoom is not None):
        raise SystemExit("error: --tta/--no-tta, --threshold and --zoom are for segmentation models")
    if run_card["model"] in ENHANCEMENT_BENCHMARKS:
        script = ENHANCEMENT_BENCHMARKS[run_card["model"]]
        command = args.command or recorded_command(run_card)
        if not command:
            raise SystemExit(f"error: {run}: give --command, the `python {script} ...` line that trained this run")
        build = classifier_card if run_card["model"] == "lesion_classifier" else colorizer_card
        fields = build(run, args, run_card, command)
        fields["bundled_with"] = (f"python scripts/bundle_model.py {run} {args.name} --checkpoint {args.checkpoint} "
                                  f"--command {shlex.quote(command)}" + (" --fp16" if args.fp16 else ""))
        check = CHECK_OUTPUTS
    elif run_card.get("task") == "denoising":
        if args.fp16:
            raise SystemExit("error: denoisers are stored in fp32 (small; the card's metrics are those of fp32)")
        fields = denoiser_card(run, args, run_card)
        check = CHECK_DENOISER
    else:
        fields = segmentation_card(run, args, run_card)
    fields["bundled_with"] += f" --summary {shlex.quote(args.summary)}"
    card = {
        "model": run_card["model"],
        **fields,
        "summary": args.summary,
        "dtype": "float16" if args.fp16 else "float32",
        "version": f"{args.name}@{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}",
        "trained_from": rel(run),
        **declarations(run_card, args.folder / f"{args.name}.json"),
    }
    model = lm.model.half() if args.fp16 else lm.model
    path = save_bundled(model, args.name, options, card, folder=args.folder)
    card = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
    card["sha256"] = file_sha256(path)
    atomic_write_text(path.with_suffix(".json"), json.dumps(card, indent=2, sort_keys=True) + "\n")
    size_mb = path.stat().st_size / 2**20
    print(f"{path}: {size_mb:.1f} MB, sha256 {card['sha256'][:16]}...")
    if size_mb > MAX_MB:
        raise SystemExit(f"error: {path} is {size_mb:.1f} MB (limit {MAX_MB} MB); try --fp16")
    if args.folder.resolve() == WEIGHTS_DIR.resolve():
        out = subprocess.run([sys.executable, "-c", check, args.name, str(weights)],
                             capture_output=True, text=True, check=True)
        diff = json.loads(out.stdout.strip().splitlines()[-1])
        where = "a simulated quarter-dose phantom" if check is CHECK_DENOISER else "samples/kvasir"
        print(f"fresh-process check: max |bundled - run| output on {where} = {diff:.2e}")
        if diff > (2e-3 if args.fp16 else 1e-5):
            raise SystemExit("error: the bundled model does not reproduce the run's outputs")
        from medattn.cli.models import write_catalog

        print(f"updated {write_catalog()} (`medattn models` lists from it)")


if __name__ == "__main__":
    main()
