"""medattn.inference: loading checkpoints, prediction contract, lesions, predict/evaluate commands."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from scipy import ndimage

from medattn.errors import ConfigError
from medattn.inference import MinSize, evaluate_model, find_lesions, load_model, predict_batch, predict_image
from medattn.models import create
from medattn.models.hub import save_bundled

OPTS = {"in_channels": 3, "num_classes": 1, "channels": [8, 16, 32], "num_res_units": 1}


def _save_tiny(folder, name: str = "tiny", **card):
    """The same (seeded, untrained) small U-Net under ``name``, its card extended by ``card``."""
    torch.manual_seed(0)
    model = create("unet", **OPTS)
    return save_bundled(model, name, OPTS, {"model": "unet", "input_size": [48, 64], "task": "segmentation", **card},
                        folder=folder)


@pytest.fixture
def checkpoint(tmp_path):
    return _save_tiny(tmp_path)


@pytest.fixture
def tta_checkpoint(tmp_path):
    """A card that says the model is meant to be run with TTA."""
    return _save_tiny(tmp_path, "tiny-tta", inference={"input_size": [48, 64], "tta": True, "threshold": 0.5})


def _count_forwards(lm) -> list[int]:
    """Record the batch size of every forward pass of ``lm.model``."""
    calls: list[int] = []
    lm.model.register_forward_hook(lambda _module, args, _out: calls.append(args[0].shape[0]))
    return calls


def _images(n: int, shape=(40, 50, 3)) -> list[np.ndarray]:
    return [(np.random.default_rng(i).random(shape) * 255).astype(np.uint8) for i in range(n)]


def test_load_model_reads_card(checkpoint):
    lm = load_model(checkpoint)
    assert lm.name == "unet" and lm.input_size == (48, 64) and lm.in_channels == 3
    assert not lm.model.training
    # a run folder holding the file loads the same weights
    lm2 = load_model(checkpoint.parent) if (checkpoint.parent / "best.safetensors").exists() else lm
    assert lm2.name == "unet"


def test_unknown_model_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="no such checkpoint"):
        load_model(tmp_path / "missing.safetensors")


def test_prediction_matches_manual_forward(checkpoint):
    """The probability map equals sigmoid(model(resized image)) resized back: no hidden steps."""
    lm = load_model(checkpoint)
    rng = np.random.default_rng(1)
    image = (rng.random((96, 128, 3)) * 255).astype(np.uint8)
    pred = predict_image(lm, image)
    assert pred.prob.shape == (96, 128) and pred.prob.dtype == np.float32
    x = torch.from_numpy(image.transpose(2, 0, 1)).float()[None] / 255
    x = torch.nn.functional.interpolate(x, size=(48, 64), mode="bilinear", align_corners=False, antialias=True)
    with torch.no_grad():
        logits = lm.model(x)
    ref = torch.sigmoid(torch.nn.functional.interpolate(logits, size=(96, 128), mode="bilinear",
                                                        align_corners=False))[0, 0].numpy()
    np.testing.assert_allclose(pred.prob, ref, atol=1e-5)


def test_tta_averages_flipped_logits(checkpoint):
    lm = load_model(checkpoint)
    image = (np.random.default_rng(2).random((48, 64, 3)) * 255).astype(np.uint8)
    x = torch.from_numpy(image.transpose(2, 0, 1)).float()[None] / 255
    with torch.no_grad():
        logits = (lm.model(x) + lm.model(x.flip(3)).flip(3) + lm.model(x.flip(2)).flip(2)) / 3
    ref = torch.sigmoid(logits)[0, 0].numpy()
    tta = predict_image(lm, image, tta=True).prob
    np.testing.assert_allclose(tta, ref, atol=1e-5)
    assert not np.allclose(tta, predict_image(lm, image).prob, atol=1e-4)


def test_lesions_against_scipy_label():
    prob = np.zeros((40, 50), np.float32)
    prob[5:10, 5:15] = 0.9  # 50 px
    prob[20:30, 30:34] = 0.7  # 40 px
    prob[35, 45] = 0.6  # 1 px
    _, lesions = find_lesions(prob, spacing=(0.5, 0.25), min_size=MinSize(px=1))
    _, n = ndimage.label(prob > 0.5, structure=np.ones((3, 3)))
    assert len(lesions) == n == 3
    assert [les["area_px"] for les in lesions] == [50, 40, 1]
    assert [les["number"] for les in lesions] == [1, 2, 3]
    assert lesions[0]["bbox"] == [5, 5, 14, 9]
    assert lesions[0]["area_mm2"] == pytest.approx(50 * 0.125)
    assert lesions[1]["mean_confidence"] == pytest.approx(0.7, abs=1e-4)
    assert find_lesions(np.zeros((4, 4)))[1] == []
    assert find_lesions(prob)[1][0]["area_mm2"] is None
    assert len(find_lesions(prob)[1]) == 2  # the default speck rule (4 px) drops the single pixel


def test_predict_command_writes_everything(checkpoint, tmp_path, run_cli):
    from PIL import Image

    src = tmp_path / "in"
    src.mkdir()
    for i in range(3):
        Image.fromarray((np.random.default_rng(i).random((40, 50, 3)) * 255).astype(np.uint8)).save(src / f"im{i}.png")
    code, _, err = run_cli("predict", "--model", checkpoint, src, "--out", tmp_path / "out", "--batch-size", "2")
    assert code == 0, err
    for i in range(3):
        for suffix in ("_mask.png", "_overlay.png", "_attention.png", ".json"):
            assert (tmp_path / "out" / f"im{i}{suffix}").is_file()
        rec = json.loads((tmp_path / "out" / f"im{i}.json").read_text())
        mask = np.asarray(Image.open(tmp_path / "out" / f"im{i}_mask.png")) > 127
        # every lesion the JSON lists is a component of the written mask (specks below the card's
        # minimum are left out of the list, never out of the mask)
        labels, _ = ndimage.label(mask, structure=np.ones((3, 3)))
        sizes = sorted(np.bincount(labels.ravel())[1:].tolist(), reverse=True)
        listed = [les["area_px"] for les in rec["lesions"]]
        assert listed == [s for s in sizes if s >= 4] and rec["lesion_count"] == len(listed)
        assert all(les["longest_diameter_px"] > 0 for les in rec["lesions"])
        assert rec["size"] == [40, 50]


def test_predict_bad_input_is_one_line(checkpoint, tmp_path, run_cli):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"")
    code, _, err = run_cli("predict", "--model", checkpoint, bad, "--out", tmp_path / "o")
    assert code == 2 and err.strip().count("\n") == 0 and "bad.png" in err


def test_evaluate_model_on_samples(checkpoint, tmp_path, run_cli):
    from pathlib import Path

    samples = Path(__file__).resolve().parents[1] / "samples" / "kvasir"
    code, out, err = run_cli("evaluate", "--model", checkpoint, "--data", samples, "--out", tmp_path / "maps",
                             "--format", "json")
    assert code == 0, err
    assert json.loads(out)["count"] == 6
    maps = sorted((tmp_path / "maps").glob("*.png"))
    assert len(maps) == 6
    from PIL import Image

    for m in maps:
        gt = Image.open(samples / "masks" / m.name)
        assert Image.open(m).size == gt.size


def test_card_without_inference_block_means_no_tta_and_half(checkpoint):
    lm = load_model(checkpoint)
    assert (lm.tta, lm.threshold) == (False, 0.5)
    assert lm.settings() == {"input_size": [48, 64], "tta": False, "threshold": 0.5, "zoom": 1}


def test_card_tta_runs_the_flipped_passes(tta_checkpoint):
    """predict_batch defaults to the card's TTA (three forward passes); tta=False overrides it."""
    lm = load_model(tta_checkpoint)
    assert lm.tta is True
    calls = _count_forwards(lm)
    images = _images(2)
    default = predict_batch(lm, images)
    assert calls == [2, 2, 2]  # the batch, its horizontal and its vertical flip
    calls.clear()
    plain = predict_batch(lm, images, tta=False)
    assert calls == [2]
    explicit = predict_batch(lm, images, tta=True)
    np.testing.assert_array_equal(default[0].prob, explicit[0].prob)
    assert not np.allclose(default[0].prob, plain[0].prob, atol=1e-4)


def test_card_inference_input_size_wins(tmp_path):
    lm = load_model(_save_tiny(tmp_path, "sized", inference={"input_size": [32, 40]}))
    assert lm.input_size == (32, 40) and (lm.tta, lm.threshold) == (False, 0.5)


@pytest.mark.parametrize(("block", "message"), [
    ({"tta": "yes"}, "inference.tta must be true or false"),
    ({"threshold": 1.5}, "inference.threshold must be a number in [0, 1]"),
    ({"input_size": [0, 64]}, "inference.input_size must be [H, W] of positive integers"),
    ([], "inference must be an object"),
])
def test_bad_inference_block_names_the_card(tmp_path, block, message):
    path = _save_tiny(tmp_path, "bad", inference=block)
    with pytest.raises(ConfigError) as info:
        load_model(path)
    assert message in str(info.value) and "bad.json" in str(info.value)


def _input_folder(tmp_path, n: int = 2):
    from PIL import Image

    src = tmp_path / "in"
    src.mkdir()
    for i, im in enumerate(_images(n)):
        Image.fromarray(im).save(src / f"im{i}.png")
    return src


def test_predict_command_uses_card_tta_and_no_tta_overrides(tta_checkpoint, tmp_path, run_cli, monkeypatch):
    import medattn.inference.files

    calls: list[int] = []
    real_load = medattn.inference.files.load_model

    def counting_load(spec, *args, **kwargs):
        lm = real_load(spec, *args, **kwargs)
        lm.model.register_forward_hook(lambda _m, a, _o: calls.append(a[0].shape[0]))
        return lm

    monkeypatch.setattr(medattn.inference.files, "load_model", counting_load)
    src = _input_folder(tmp_path)
    code, out, err = run_cli("predict", "--model", tta_checkpoint, src, "--out", tmp_path / "card")
    assert code == 0, err
    assert "TTA on (card)" in out and "threshold 0.5 (card)" in out
    assert calls == [2, 2, 2]
    rec = json.loads((tmp_path / "card" / "im0.json").read_text())
    assert rec["tta"] is True and rec["inference"] == {"input_size": [48, 64], "tta": True, "threshold": 0.5,
                                                    "zoom": 1}

    calls.clear()
    code, out, err = run_cli("predict", "--model", tta_checkpoint, src, "--out", tmp_path / "plain", "--no-tta")
    assert code == 0, err
    assert "TTA off (given)" in out and calls == [2]
    assert json.loads((tmp_path / "plain" / "im0.json").read_text())["tta"] is False


def test_card_threshold_changes_the_mask(checkpoint, tmp_path, run_cli):
    """A card threshold other than 0.5 gives the mask prob > threshold; --threshold overrides it."""
    from PIL import Image

    src = _input_folder(tmp_path, 1)
    prob = predict_image(load_model(checkpoint), np.asarray(Image.open(src / "im0.png"))).prob
    threshold = round(float(np.quantile(prob, 0.3)), 4)  # keeps the 70 % highest pixels
    assert ((prob > threshold) != (prob > 0.5)).sum() > 50
    card_ckpt = _save_tiny(tmp_path, "tiny-thr", inference={"input_size": [48, 64], "tta": False,
                                                            "threshold": threshold})
    assert load_model(card_ckpt).threshold == threshold

    def mask(out_name: str, *extra: str) -> np.ndarray:
        code, out, err = run_cli("predict", "--model", card_ckpt, src, "--out", tmp_path / out_name, *extra)
        assert code == 0, err
        assert ("threshold 0.5 (given)" if extra else f"threshold {threshold:g} (card)") in out
        rec = json.loads((tmp_path / out_name / "im0.json").read_text())
        assert rec["threshold"] == (float(extra[1]) if extra else threshold)
        return np.asarray(Image.open(tmp_path / out_name / "im0_mask.png")) > 127

    np.testing.assert_array_equal(mask("card"), prob > threshold)
    np.testing.assert_array_equal(mask("given", "--threshold", "0.5"), prob > 0.5)


def test_evaluate_model_defaults_to_card_tta_and_says_so(tta_checkpoint, tmp_path, run_cli):
    from pathlib import Path

    samples = Path(__file__).resolve().parents[1] / "samples" / "kvasir"
    lm = load_model(tta_checkpoint)
    calls = _count_forwards(lm)
    lines: list[str] = []
    evaluate_model(lm, samples, out=tmp_path / "card", batch_size=6, progress=False, log=lines.append)
    assert calls == [6, 6, 6] and lines[0].endswith("at 48x64, TTA on (card), zoom 1 (card)")
    calls.clear()
    evaluate_model(lm, samples, out=tmp_path / "plain", tta=False, batch_size=6, progress=False)
    assert calls == [6]
    code, _, err = run_cli("evaluate", "--model", tta_checkpoint, "--data", samples, "--no-tta", "--workers", "1")
    assert code == 0, err
    assert "TTA off (given)" in err


def test_evaluate_command_scores_the_card_threshold(checkpoint, tmp_path, run_cli):
    """`medattn evaluate --model` scores Dice at the card's threshold (as its line says); --threshold overrides."""
    from pathlib import Path

    from medattn.evaluation.evaluator import score_arrays
    from medattn.io import read_gray, read_mask

    samples = Path(__file__).resolve().parents[1] / "samples" / "kvasir"
    probs = [p.prob for p in predict_batch(load_model(checkpoint), _images(1, (64, 64, 3)))]
    threshold = round(float(np.quantile(probs[0], 0.3)), 4)
    card_ckpt = _save_tiny(tmp_path, "tiny-thr", inference={"input_size": [48, 64], "tta": False,
                                                            "threshold": threshold})

    def dice(out_name: str, *extra: str) -> tuple[float, str]:
        code, out, err = run_cli("evaluate", "--model", card_ckpt, "--data", samples, "--out", tmp_path / out_name,
                                 "--format", "json", "--workers", "1", *extra)
        assert code == 0, err
        return json.loads(out)["dice"], err

    card_dice, err = dice("card")
    assert f"Dice / IoU of p > {threshold:g} (card)" in err
    maps = sorted((tmp_path / "card").glob("*.png"))
    expected = np.mean([score_arrays(read_gray(m), read_mask(samples / "masks" / m.name), "auto", threshold)[0]["dice"]
                        for m in maps])
    assert card_dice == pytest.approx(expected, abs=1e-4)
    half_dice, err = dice("half", "--threshold", "0.5")
    assert "Dice / IoU of p > 0.5 (given)" in err and abs(half_dice - card_dice) > 1e-3


def test_predict_refuses_a_denoiser_before_saying_settings(tmp_path, run_cli):
    src = _input_folder(tmp_path, 1)
    code, out, err = run_cli("predict", "--model", "cadn-ldct", src, "--out", tmp_path / "o")
    assert code == 2 and "denoising model; `medattn predict` needs a segmentation model" in err
    assert "inference settings" not in out and err.count("\n") == 1
