"""medattn.inference: loading checkpoints, prediction contract, lesions, predict/evaluate commands."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from scipy import ndimage

from medattn.errors import ConfigError
from medattn.inference import load_model, measure_lesions, predict_image
from medattn.models import create
from medattn.models.hub import save_bundled

OPTS = {"in_channels": 3, "num_classes": 1, "channels": [8, 16, 32], "num_res_units": 1}


@pytest.fixture
def checkpoint(tmp_path):
    torch.manual_seed(0)
    model = create("unet", **OPTS)
    return save_bundled(model, "tiny", OPTS, {"model": "unet", "input_size": [48, 64], "task": "segmentation"},
                        folder=tmp_path)


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
    lesions = measure_lesions(prob, spacing=(0.5, 0.25))
    _, n = ndimage.label(prob > 0.5, structure=np.ones((3, 3)))
    assert len(lesions) == n == 3
    assert [les["area_px"] for les in lesions] == [50, 40, 1]
    assert lesions[0]["bbox"] == [5, 5, 14, 9]
    assert lesions[0]["area_mm2"] == pytest.approx(50 * 0.125)
    assert lesions[1]["mean_confidence"] == pytest.approx(0.7, abs=1e-4)
    assert measure_lesions(np.zeros((4, 4))) == []
    assert measure_lesions(prob)[0]["area_mm2"] is None


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
        assert sum(les["area_px"] for les in rec["lesions"]) == int(mask.sum())
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
