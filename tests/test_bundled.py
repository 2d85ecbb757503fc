"""Trained models shipped in src/medattn/weights: cards, integrity, loading, and that they work.

Each bundled ``<name>.safetensors`` is checked against its card (fields, SHA-256, size,
no option pointing at a file outside the package, a real command that trained it), loaded
by name through ``medattn.inference.load_model`` and used by the CLI. The polyp model must
segment the six shipped Kvasir samples (PraNet *test* split images, unseen in training) with
mean Dice > 0.5 at p > 0.5; the skin model must reproduce, on the real PH2 data, the held-out
Dice its card reports. The enhancement models (seed paper 002): the lesion classifier's CAWE
map must point into the polyp on the samples far more often than chance and reproduce its
card's pointing game on the held-out images; the colorizer must beat the gray image on the
samples and reproduce its card's held-out L1 / PSNR; ``medattn enhance`` and the web app's
enhance pipeline must run on the bundled models with nothing installed. Denoisers (card task
``denoising``, e.g. ``cadn-ldct``): they must clearly lower the error of a simulated quarter-dose
abdominal phantom (no data needed), reproduce one held-out slice's PSNR of their card on the real
CT, and ``medattn denoise --model <name>`` must write a new DICOM instance for pydicom's CT file.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import re
import shlex
from pathlib import Path

import numpy as np
import pytest

from medattn.enhance import available_colorizers, available_models
from medattn.models.hub import WEIGHTS_DIR, model_card

BUNDLED = sorted(p.stem for p in WEIGHTS_DIR.glob("*.safetensors"))
REPO = Path(__file__).resolve().parent.parent
SAMPLES = REPO / "samples" / "kvasir"
CLASSIFIERS, COLORIZERS = available_models(), available_colorizers()
DENOISERS = [n for n in BUNDLED if model_card(WEIGHTS_DIR / f"{n}.safetensors").get("task") == "denoising"]
#: `medattn` verbs that train a model
TRAINING_VERBS = ("train", "pretrain")
CARD_FIELDS = ("model", "options", "task", "input_size", "data", "split", "epochs", "wall_clock_seconds",
               "hardware", "metrics", "command", "version", "sha256")
FILE_OPTIONS = ("encoder_pretrained", "swin_pretrained", "pretrained_encoder", "mae", "pretrained")


def _dice(pred: np.ndarray, gt: np.ndarray) -> float:
    inter = np.logical_and(pred, gt).sum()
    total = pred.sum() + gt.sum()
    return 1.0 if total == 0 else float(2 * inter / total)


def _bundles_of(task_hint: str) -> list[str]:
    return [n for n in BUNDLED if task_hint in n]


def command_problem(command: str | None) -> str | None:
    """Why ``command`` is not a real project command that trains a model (None when it is one).

    Accepted: ``[.venv/bin/]medattn train|pretrain ...`` whose ``*.yaml`` config files exist,
    ``[.venv/bin/]python benchmarks/<x>.py|scripts/<x>.py ...`` for a script in the repository,
    and ``python -m medattn.<module> ...`` for an importable module.
    """
    if not command:
        return "no command"
    words = shlex.split(command)
    prog = Path(words[0]).name
    if prog == "medattn":
        if len(words) < 2 or words[1] not in TRAINING_VERBS:
            return f"`medattn {' '.join(words[1:2])}` does not train (expected one of {TRAINING_VERBS})"
        missing = [w for w in words[2:] if w.endswith((".yaml", ".yml")) and not (REPO / w).is_file()]
        return f"config file(s) {missing} do not exist" if missing else None
    if not re.fullmatch(r"python(3(\.\d+)?)?", prog) or len(words) < 2:
        return f"{words[0]!r} is neither medattn nor python"
    if words[1] == "-m":
        module = words[2] if len(words) > 2 else ""
        if not module.startswith("medattn.") or importlib.util.find_spec(module) is None:
            return f"module {module!r} is not a medattn module"
        return None
    script = Path(words[1])
    if script.suffix != ".py" or script.parts[0] not in ("benchmarks", "scripts") or not (REPO / script).is_file():
        return f"{words[1]} is not a script in benchmarks/ or scripts/ of the repository"
    return None


def hardware_problem(hardware: object) -> str | None:
    """Why a card's ``hardware`` field does not describe the training machine (None when it does).

    Any machine is fine (a 2-core CPU, a GPU server); the field must be a non-empty string that
    names the processor kind it trained on: CPU or GPU (or a known accelerator family name).
    """
    if not isinstance(hardware, str) or not hardware.strip():
        return "no hardware description"
    if not re.search(r"\b(CPU|GPU|TPU|NVIDIA|AMD|Intel|Apple|H100|H200|A100)\b", hardware, re.IGNORECASE):
        return f"hardware {hardware!r} names no CPU or GPU"
    return None


def test_hardware_rule_accepts_any_described_machine():
    assert hardware_problem("2-core CPU, no GPU (x86_64, shared with other jobs)") is None
    assert hardware_problem("1 x NVIDIA H200 GPU (141 GB), 16 CPU cores") is None  # GPU-trained bundles pass
    assert hardware_problem("") == "no hardware description"
    assert hardware_problem("   ") == "no hardware description"
    assert hardware_problem(None) == "no hardware description"
    assert "names no CPU or GPU" in hardware_problem("my laptop")


def test_command_rule_accepts_project_commands_only():
    assert command_problem(".venv/bin/medattn train configs/bsanet_polyp.yaml --out runs/x") is None
    assert command_problem("python benchmarks/enhance_cawe.py --limit 3") is None
    assert command_problem("python -m medattn.cli.main train") is None
    assert "does not train" in command_problem("medattn predict --model x in --out y")
    assert "do not exist" in command_problem("medattn train configs/no_such.yaml")
    assert "not a script" in command_problem(".venv/bin/python benchmarks/no_such.py")
    assert "not a script" in command_problem("python /tmp/train.py")
    assert "not a medattn module" in command_problem("python -m torch.utils.bottleneck")
    assert "neither" in command_problem("echo medattn train")
    assert command_problem("") == "no command"


def test_weights_folder_is_documented():
    readme = (WEIGHTS_DIR / "README.md").read_text(encoding="utf-8")
    for name in BUNDLED:
        assert f"`{name}`" in readme, f"{name} is not described in src/medattn/weights/README.md"
    for path in WEIGHTS_DIR.glob("*.json"):
        assert path.with_suffix(".safetensors").is_file(), f"{path.name} has no weights"


@pytest.mark.parametrize("name", BUNDLED)
def test_card_and_integrity(name):
    path = WEIGHTS_DIR / f"{name}.safetensors"
    card = model_card(path)
    missing = [f for f in CARD_FIELDS if f not in card]
    assert not missing, f"{name}.json lacks {missing}"
    assert hashlib.sha256(path.read_bytes()).hexdigest() == card["sha256"]
    assert path.stat().st_size < 30 * 2**20
    assert hardware_problem(card["hardware"]) is None, f"{name}: {hardware_problem(card['hardware'])}"
    assert command_problem(card["command"]) is None, f"{name}: {command_problem(card['command'])}"
    assert card["epochs"] >= 1 and card["wall_clock_seconds"] > 0
    # test-set metrics, not validation scores
    assert card["metrics"]["test"] and "val_dice" not in json.dumps(card["metrics"])
    for key in FILE_OPTIONS:
        assert card["options"].get(key) is None, f"{name}: option {key} points at a file outside the package"


SEGMENTERS = [n for n in BUNDLED if model_card(WEIGHTS_DIR / f"{n}.safetensors").get("task") == "segmentation"]


@pytest.mark.parametrize("name", BUNDLED)
def test_card_inference_block_is_valid(name):
    """Every bundled card's ``inference`` block reads (a denoiser's keep_noise is its own)."""
    from medattn.inference.loading import card_inference

    card = model_card(WEIGHTS_DIR / f"{name}.safetensors")
    card_inference(card, f"{name}.json")  # raises on a malformed block


@pytest.mark.parametrize("name", SEGMENTERS)
def test_segmenter_card_says_how_it_was_measured(name):
    """A segmenter's card says how to run it, and its test numbers were measured exactly so: the settings
    benchmarks/polyp_results.py recorded (``metrics.inference``), else those of benchmarks/ph2_results.py
    (no TTA or zoom, p > 0.5; a card without ``zoom`` means zoom 1)."""
    from medattn.inference import load_model

    card = model_card(WEIGHTS_DIR / f"{name}.safetensors")
    block = {"zoom": 1, **card["inference"]}
    measured = card["metrics"].get("inference") or {"tta": False, "threshold": 0.5, "zoom": 1}
    assert block == {"input_size": card["input_size"], "zoom": 1, **measured}
    lm = load_model(name)
    assert lm.settings() == block and lm.input_size == tuple(card["input_size"])


def test_bundle_script_keeps_the_runs_inference_settings_unless_told(tmp_path, capsys):
    from argparse import Namespace

    spec = importlib.util.spec_from_file_location("bundle_model", REPO / "scripts" / "bundle_model.py")
    bundle = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bundle)
    run_card = {"input_size": [96, 128], "inference": {"input_size": [96, 128], "tta": True, "threshold": 0.4,
                                                       "zoom": 2}}
    args = Namespace(checkpoint="best", tta=None, threshold=None, zoom=None)
    assert bundle.inference_settings(tmp_path, args, run_card) == run_card["inference"]
    assert bundle.inference_flags(args) == "" and "note" not in capsys.readouterr().out
    args = Namespace(checkpoint="best", tta=False, threshold=0.5, zoom=1)
    assert bundle.inference_settings(tmp_path, args, run_card) == {"input_size": [96, 128], "tta": False,
                                                                    "threshold": 0.5, "zoom": 1}
    assert bundle.inference_flags(args) == " --no-tta --threshold 0.5 --zoom 1"
    assert "the card's test metrics were measured with the run's setting" in capsys.readouterr().out
    # a run card from before the inference block: its input size, no TTA, threshold 0.5
    old = bundle.inference_settings(tmp_path, Namespace(checkpoint="last", tta=None, threshold=None, zoom=None),
                                    {"input_size": [128, 128]})
    assert old == {"input_size": [128, 128], "tta": False, "threshold": 0.5, "zoom": 1}


@pytest.mark.parametrize("name", BUNDLED)
def test_listed_as_bundled(name, run_cli):
    code, out, _ = run_cli("models", name, "--json")
    assert code == 0
    records = {r["name"]: r for r in json.loads(out)}
    assert records[name]["bundled"] is True
    assert records[name]["params"] > 0


@pytest.mark.parametrize("name", _bundles_of("polyp"))
def test_polyp_model_segments_the_samples(name):
    from medattn.inference import load_model, predict_batch
    from medattn.io import read_mask, read_rgb

    lm = load_model(name)
    images = sorted((SAMPLES / "images").iterdir())
    preds = predict_batch(lm, [read_rgb(p) for p in images])  # as the card says (inference block)
    dices = [_dice(pr.prob > lm.threshold, read_mask(SAMPLES / "masks" / f"{p.stem}.png")) for p, pr in zip(images, preds, strict=True)]
    assert len(dices) == 6
    assert np.mean(dices) > 0.5, f"{name}: Dice on the six Kvasir samples {np.round(dices, 3)}"


@pytest.mark.parametrize("name", _bundles_of("polyp"))
def test_predict_cli_with_bundled_name(name, run_cli, tmp_path):
    code, _, err = run_cli("predict", "--model", name, SAMPLES / "images", "--out", tmp_path)
    assert code == 0, err
    records = [json.loads(p.read_text()) for p in sorted(tmp_path.glob("*.json"))]
    assert len(records) == 6 and all(r["model"] for r in records)
    assert len(list(tmp_path.glob("*_mask.png"))) == 6


@pytest.mark.parametrize("name", _bundles_of("skin"))
def test_skin_model_reproduces_its_card(name, shared_data):
    """Recompute the card's held-out-fold Dice on PH2 (images never seen in that model's training)."""
    from medattn.data import discover
    from medattn.inference import load_model, predict_batch
    from medattn.io import read_mask, read_rgb

    card = model_card(WEIGHTS_DIR / f"{name}.safetensors")
    if "held_out_ids" in card["split"]:  # a PH2 k-fold model: its held-out fold
        held_out, expected = set(card["split"]["held_out_ids"]), card["metrics"]["test"]["dice"]
        assert len(held_out) == card["metrics"]["held_out_images"]
    else:  # trained on a split file (ISIC 2017 + PH2): its PH2 test part
        held_out = set(card["split"]["test_ids"]["test_ph2"])
        expected = card["metrics"]["test"]["test_ph2"]["dice"]
        assert card["split"]["counts"]["test_ph2"] == len(held_out)
    samples = [s for s in discover(shared_data / "ph2").samples if s.id in held_out]
    assert len(samples) == len(held_out)
    lm = load_model(name)
    dices = [_dice(predict_batch(lm, [read_rgb(s.image)])[0].prob > lm.threshold, read_mask(s.mask))
             for s in samples]
    assert np.mean(dices) == pytest.approx(expected, abs=2e-3)
    assert np.mean(dices) > 0.6


def _kvasir_samples() -> list:
    from medattn.data.types import Sample

    return [Sample(id=p.stem, image=p, mask=SAMPLES / "masks" / f"{p.stem}.png", dataset="kvasir-seg")
            for p in sorted((SAMPLES / "images").iterdir())]


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_classifier_attention_points_into_the_polyps_of_the_samples(name):
    """CAWE with the bundled classifier on the six Kvasir samples (PraNet test images, not trained on),
    scored by the benchmark's pointing game. Measured: 3 of 6 hits (0.50) against 0.07 by chance."""
    from medattn.enhance.classifier import localisation_scores
    from medattn.inference import load_model

    card = model_card(WEIGHTS_DIR / f"{name}.safetensors")
    r = localisation_scores(load_model(name).model, _kvasir_samples(), size=card["whole_image_size"], progress=False)
    assert r["images"] == 6
    assert r["pointing"] >= r["pointing_chance"] + 0.25, r
    assert r["energy"] > r["energy_chance"], r


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_classifier_reproduces_its_card_on_held_out_images(name, shared_data):
    """The card's pointing game / energy on every held-out set, recomputed with the benchmark's code
    (Kvasir 0.72 vs chance 0.15 on 100 images, PH2 0.95 vs 0.28)."""
    from medattn.enhance.classifier import localisation_scores, weak_label_split
    from medattn.inference import load_model

    card = model_card(WEIGHTS_DIR / f"{name}.safetensors")
    parts = weak_label_split(shared_data, card["split"]["limit"], card["split"]["seed"])
    assert [s.id for s in parts["test_ph2"]] == card["split"]["held_out_ph2_ids"]
    model = load_model(name).model
    for part, expected in card["metrics"]["test"]["localisation"].items():
        r = localisation_scores(model, parts[f"test_{part}"], size=card["whole_image_size"], progress=False)
        assert r["images"] == expected["images"]
        assert r["pointing"] == pytest.approx(expected["pointing"], abs=0.02), part  # at most 2 images flip
        assert r["energy"] == pytest.approx(expected["energy"], abs=5e-3), part
        assert r["pointing"] > 2 * r["pointing_chance"], part
    kvasir = card["metrics"]["test"]["localisation"]["kvasir"]
    assert kvasir["pointing"] >= kvasir["pointing_chance"] + 0.4


@pytest.mark.parametrize("name", COLORIZERS)
def test_colorizer_beats_gray_on_the_samples(name):
    """Gray versions of the six Kvasir samples colorized at the card's size are closer to the colour
    originals than the gray image is, on every image (measured mean L1 0.061 vs 0.134)."""
    from medattn.enhance.colorize import colorization_scores, load_colour_images
    from medattn.inference import load_model

    card = model_card(WEIGHTS_DIR / f"{name}.safetensors")
    originals = load_colour_images(sorted((SAMPLES / "images").iterdir()), 128, progress=False)
    scores, gray, colorized = colorization_scores(load_model(name).model, originals, size=card["input_size"][0])
    l1_col = np.abs(colorized.astype(float) - originals).mean(axis=(1, 2, 3))
    l1_gray = np.abs(np.repeat(gray[..., None], 3, axis=3).astype(float) - originals).mean(axis=(1, 2, 3))
    assert (l1_col < l1_gray).all(), (l1_col, l1_gray)
    assert scores["l1_colorized"] < 0.6 * scores["l1_gray"]
    assert scores["psnr_colorized"] > scores["psnr_gray"] + 3


@pytest.mark.parametrize("name", COLORIZERS)
def test_colorizer_reproduces_its_card(name, shared_data):
    from medattn.enhance.colorize import colorization_scores, colour_test_samples, load_colour_images
    from medattn.inference import load_model

    card = model_card(WEIGHTS_DIR / f"{name}.safetensors")
    test = card["metrics"]["test"]
    held = colour_test_samples(shared_data)
    assert [s.id for s in held] == card["split"]["held_out_ids"]
    originals = load_colour_images([s.image for s in held], test["image_size"], progress=False)
    scores, _, _ = colorization_scores(load_model(name).model, originals, size=test["network_size"])
    for key in ("l1_colorized", "l1_gray"):
        assert scores[key] == pytest.approx(test[key], abs=1e-3), key
    for key in ("psnr_colorized", "psnr_gray"):
        assert scores[key] == pytest.approx(test[key], abs=0.05), key


def _gray_sample(folder: Path) -> Path:
    """The first Kvasir sample as a grayscale PNG in ``folder`` (the paper colorizes gray images)."""
    from medattn.io import read_rgb, rgb_to_gray, write_image

    image = sorted((SAMPLES / "images").iterdir())[0]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{image.stem}_gray.png"
    write_image(path, rgb_to_gray(read_rgb(image)))
    return path


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_enhance_cli_with_bundled_models(name, run_cli, tmp_path):
    """`medattn enhance --model <bundled>` writes the four outputs for a gray image, colorized by the bundled
    colorizer; a colour image keeps its colours (no colorized output, eq. 7 on the original)."""
    from medattn.io import read_rgb

    image = sorted((SAMPLES / "images").iterdir())[0]
    gray = _gray_sample(tmp_path / "in")
    code, out, err = run_cli("enhance", "--model", name, image, gray, "--out", tmp_path / "out")
    assert code == 0, err
    kinds = ("heatmap", "heatmap_overlay", "colorized", "fused")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(
        [f"{gray.stem}_{k}.png" for k in kinds] + [f"{image.stem}_{k}.png" for k in kinds if k != "colorized"])
    assert f"colorizer: {COLORIZERS[0]} (bundled default); --colorize auto: colorized 1, kept colour 1" in out
    h, w = read_rgb(image).shape[:2]
    for k in kinds:
        assert read_rgb(tmp_path / "out" / f"{gray.stem}_{k}.png").shape == (h, w, 3)
    colorized = read_rgb(tmp_path / "out" / f"{gray.stem}_colorized.png").astype(int)
    assert np.abs(colorized[..., 0] - colorized[..., 2]).mean() > 5  # not a gray image
    fused = read_rgb(tmp_path / "out" / f"{image.stem}_fused.png").astype(float)
    original = read_rgb(image).astype(float)
    # eq. 7 on the original scales each pixel's three channels by one factor a + (1 - a) L (colorized: up to 135
    # levels off); the factor recovered from the channel sums predicts every channel to rounding
    scale = fused.sum(axis=2) / np.maximum(original.sum(axis=2), 1)
    assert np.abs(fused - original * scale[..., None]).max() <= 2


@pytest.mark.skipif(not CLASSIFIERS, reason="no lesion classifier is bundled")
def test_app_enhance_pipeline_runs_on_bundled_models(tmp_path, monkeypatch):
    """The web app offers the bundled classifier for its enhance pipeline and, while <data-dir>/models is
    empty, colorizes a gray input with the bundled colorizer; a colour input keeps its colours."""
    from medattn.app import modelcards, pipelines
    from medattn.app.pipelines import process

    monkeypatch.setattr(modelcards, "USER_MODELS", {})  # nothing installed into <data-dir>/models
    enhance = pipelines.catalog()["pipelines"]["enhance"]
    assert enhance["available"] and set(CLASSIFIERS) <= set(enhance["models"])
    assert pipelines.resolve("enhance", None).model == enhance["default"]
    assert pipelines.default_colorizer() == COLORIZERS[0]
    gray = _gray_sample(tmp_path / "in")
    (tmp_path / "gray").mkdir()
    res = process("enhance", enhance["default"], [gray], "image", tmp_path / "gray", lambda *_: None,
                  user_models={})
    kinds = {kind for kind, _, _ in res.files}
    assert {"preview", "processed", "attention", "colorized", "processed_file"} <= kinds
    assert res.results["metrics"]["colorizer"] == COLORIZERS[0]
    assert 0.0 <= res.results["metrics"]["lesion probability (classifier)"] <= 1.0
    image = sorted((SAMPLES / "images").iterdir())[0]
    (tmp_path / "colour").mkdir()
    res = process("enhance", enhance["default"], [image], "image", tmp_path / "colour", lambda *_: None,
                  user_models={})
    assert "colorized" not in {kind for kind, _, _ in res.files}
    assert res.results["metrics"]["colorizer"].startswith("none (colour input kept its colours")


# -- denoisers (seed paper: CADN for low-dose CT) ------------------------------------------------

#: a bundled denoiser must bring the phantom's whole-slice RMSE below this share of the low-dose input's.
#: Measured (calibrated noise insertion, 14.2 HU): cadn-ldct (blind CADN, 16 epochs) 0.90; doing nothing,
#: and the untrained CADN / CADN-small (their residual heads start at zero), 1.0. The piecewise-flat phantom
#: is far from the anatomy it was trained on: the real-pair test below is the quality check, this one a
#: fresh-install sanity check that needs no data.
PHANTOM_RMSE_RATIO = 0.95


@pytest.fixture(scope="module")
def phantom_pair() -> tuple[np.ndarray, np.ndarray]:
    """(clean, 25 %-dose) synthetic abdominal slice in HU on the 0.9765625 mm grid, fixed seed: the clean slice
    plus projection-domain noise of the simulation calibrated on the real L506 pairs (Hann 1.25, i0 6.41e5)."""
    from medattn.denoise.simulate import PHANTOM_SPACING_MM, abdomen_phantom, simulate_noise

    clean = abdomen_phantom()
    noise = simulate_noise(clean, 0.25, i0=6.41e5, pixel_size_mm=PHANTOM_SPACING_MM, seed=0,
                           kernels=(("hann", 1.25),))[0]
    return clean, clean + noise


def _rmse_ratio(denoise, pair: tuple[np.ndarray, np.ndarray]) -> float:
    clean, low = pair
    rmse = lambda x: float(np.sqrt(np.mean((x.astype(np.float64) - clean) ** 2)))  # noqa: E731
    return rmse(denoise(low)) / rmse(low)


def test_phantom_rule_fails_without_denoising(phantom_pair):
    """The phantom check of the bundled denoisers cannot pass by doing nothing or with untrained weights."""
    import torch

    from medattn.denoise.apply import torch_denoiser
    from medattn.models.registry import create

    clean, low = phantom_pair
    assert 10 < np.sqrt(np.mean((low - clean) ** 2)) < 40  # quarter-dose noise is there to remove
    torch.manual_seed(0)
    for model in (lambda hu: hu, torch_denoiser(create("cadn_small")), torch_denoiser(create("cadn"))):
        assert _rmse_ratio(model, phantom_pair) > PHANTOM_RMSE_RATIO


@pytest.mark.parametrize("name", DENOISERS)
def test_denoiser_cleans_a_simulated_low_dose_phantom(name, phantom_pair):
    from medattn.denoise.apply import torch_denoiser
    from medattn.inference import load_model

    ratio = _rmse_ratio(torch_denoiser(load_model(name).model), phantom_pair)
    assert ratio < PHANTOM_RMSE_RATIO, f"{name}: RMSE to the clean phantom only down to {ratio:.2f} of the input's"


@pytest.mark.parametrize("name", DENOISERS)
def test_denoiser_reproduces_its_card_on_a_held_out_slice(name, shared_data):
    """Recompute one held-out slice of the card's ldct_eval numbers (z = 10 of the simulated series, or the
    first real quarter-dose pair), the way `medattn denoise` runs the model (resampled to its trained grid)."""
    from medattn.denoise.apply import load_denoiser
    from medattn.denoise.data import LDCTPairs, RealLDCTPairs, SimulationSettings, collection
    from medattn.metrics import psnr, rmse_hu

    card = model_card(WEIGHTS_DIR / f"{name}.safetensors")
    metrics = card["metrics"]
    rows = {r["id"]: r for r in metrics["per_slice"]}
    assert len(rows) == metrics["test"]["slices"] and set(rows) == set(card["split"]["held_out_slices"])
    if metrics["dose"] == "real":
        folder = shared_data / "ct" / Path(metrics["test_volume"]).name
        pairs = RealLDCTPairs(folder, metrics["spacing_mm"][0])
        sid = next(iter(rows))
        low, clean, _ = pairs.pair(pairs.ids.index(sid))
        spacing = tuple(metrics["spacing_mm"])
    else:
        sid = "ts_dicom/0010" if "ts_dicom/0010" in rows else next(iter(rows))
        vols = collection(["test"], shared_data)
        assert [v.name for v in vols] == [sid.split("/")[0]], "the held-out series is not in ../shared/data"
        sim = LDCTPairs(vols, "slice", SimulationSettings(dose=metrics["dose"]))
        i = [f"{vols[vi].name}/{z:04d}" for vi, z in sim.index].index(sid)
        low, clean, _ = sim.pair(i)
        spacing = vols[0].spacing
    denoiser, _ = load_denoiser(name)
    out = denoiser(low, spacing)
    window = (metrics["window"]["center"], metrics["window"]["width"])
    row = rows[sid]
    assert psnr(low, clean, window=window) == pytest.approx(row["input_psnr"], abs=0.05)
    assert psnr(out, clean, window=window) == pytest.approx(row["psnr"], abs=0.05)
    assert rmse_hu(out, clean) == pytest.approx(row["rmse_hu"], abs=0.1)
    assert row["psnr"] > row["input_psnr"] + 1.0, f"{name} does not denoise {sid}: {row}"


@pytest.mark.parametrize("name", DENOISERS)
def test_denoise_cli_with_bundled_denoiser(name, run_cli, tmp_path):
    """`medattn denoise --model <bundled>` on pydicom's CT_small.dcm writes a new, less noisy DICOM instance."""
    import pydicom

    from medattn.denoise.apply import estimate_noise_hu
    from medattn.denoise.data import pydicom_data_file
    from medattn.io import read_image

    source = pydicom_data_file("CT_small.dcm")
    assert source is not None, "pydicom ships CT_small.dcm"
    code, out, err = run_cli("denoise", "--model", name, source, "--out", tmp_path)
    assert code == 0, err
    assert "denoised 1 slice(s)" in out
    written = tmp_path / "CT_small.dcm"
    before, after = pydicom.dcmread(source), pydicom.dcmread(written)
    assert after.SOPInstanceUID != before.SOPInstanceUID and after.SeriesInstanceUID != before.SeriesInstanceUID
    assert after.Modality == "CT" and after.PatientID == before.PatientID
    hu_in, hu_out = read_image(source).array.astype(np.float32), read_image(written).array.astype(np.float32)
    assert hu_out.shape == hu_in.shape == (128, 128)
    assert 0 < np.abs(hu_out - hu_in).mean() < 50
    assert estimate_noise_hu(hu_out) < estimate_noise_hu(hu_in)


def test_bundle_script_pairs_a_denoiser_only_with_its_own_evaluation_row(tmp_path):
    """scripts/bundle_model.py takes the ldct_eval row whose weights have the bundled file's SHA-256, else stops."""
    from medattn.models.hub import save_bundled
    from medattn.models.registry import create
    from medattn.utils.fileio import file_sha256

    spec = importlib.util.spec_from_file_location("bundle_model", REPO / "scripts" / "bundle_model.py")
    bundle = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bundle)
    weights = save_bundled(create("cadn_small"), "best", {}, {"model": "cadn_small"}, folder=tmp_path)
    scores = {"psnr": 25.0, "ssim": 0.8, "rmse_hu": 30.0, "seconds": 1.0}
    base = {"psnr": 21.0, "ssim": 0.7, "rmse_hu": 41.0, "seconds": 0.0}
    doc = {"dose": 0.25, "window": {"center": 40.0, "width": 400.0}, "test_volume": "ct/dicom",
           "summary": {"low-dose input": base, "other run": {**scores, "weights": {"path": str(weights), "sha256": "0" * 64}}},
           "per_slice": {"low-dose input": [{"id": "ts_dicom/0010", **base}],
                         "other run": [{"id": "ts_dicom/0010", **scores}]}}
    results = tmp_path / "ldct_eval.json"
    results.write_text(json.dumps(doc))
    run_card = {"simulation": {"dose": 0.25}}
    with pytest.raises(SystemExit, match="held other weights"):
        bundle.ldct_metrics(weights, results, run_card, "best")
    doc["summary"]["this run"] = {**scores, "psnr": 26.0, "weights": {"path": "elsewhere.safetensors",
                                                                     "sha256": file_sha256(weights)}}
    doc["per_slice"]["this run"] = [{"id": "ts_dicom/0010", **scores, "psnr": 26.0}]
    results.write_text(json.dumps(doc))
    m = bundle.ldct_metrics(weights, results, run_card, "best")
    assert m["row"] == "this run" and m["test"]["psnr"] == 26.0 and m["test"]["low_dose_input"]["psnr"] == 21.0
    assert m["tta"] is False and m["keep_noise"] == 0.0
    doc["summary"]["this run"].update(tta=True, keep_noise=0.25)  # measured as an 8-fold self-ensemble
    results.write_text(json.dumps(doc))
    assert bundle.ldct_metrics(weights, results, run_card, "best")["tta"] is True
    assert m["per_slice"] == [{"id": "ts_dicom/0010", "psnr": 26.0, "ssim": 0.8, "rmse_hu": 30.0,
                               "input_psnr": 21.0, "input_ssim": 0.7, "input_rmse_hu": 41.0}]
    with pytest.raises(SystemExit, match="dose"):
        bundle.ldct_metrics(weights, results, {"simulation": {"dose": 0.5}}, "best")


@pytest.mark.parametrize("name", DENOISERS)
def test_app_denoise_pipelines_run_on_the_bundled_denoiser(name, tmp_path, monkeypatch):
    """With nothing installed into <data-dir>/models the app offers the bundled denoiser for `denoise` and
    `denoise+segment`, and runs both on a CT DICOM (pydicom's CT_small.dcm)."""
    from medattn.app import modelcards, pipelines
    from medattn.app.pipelines import process
    from medattn.denoise.data import pydicom_data_file

    monkeypatch.setattr(modelcards, "USER_MODELS", {})
    catalog = pipelines.catalog()["pipelines"]
    assert catalog["denoise"]["available"] and name in catalog["denoise"]["models"]
    assert pipelines.resolve("denoise", None, "ct").model in DENOISERS
    source = pydicom_data_file("CT_small.dcm")
    assert source is not None
    res = process("denoise", name, [source], "dicom", tmp_path / "den", lambda *_: None, user_models={})
    assert "processed" in {kind for kind, _, _ in res.files}
    chain = catalog.get("denoise+segment")
    if chain and chain["available"]:
        # while no CT segmenter is bundled, the chain runs on CT only by explicit override
        chosen = pipelines.resolve("denoise+segment", None, "ct", allow_mismatch=True)
        res = process("denoise+segment", chosen.model, [source], "dicom",
                      tmp_path / "chain", lambda *_: None, user_models={})
        assert "processed" in {kind for kind, _, _ in res.files}
