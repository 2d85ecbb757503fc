"""medattn.inference zoom: the window grid, Gaussian blending, fusion, and the card / CLI settings."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from medattn.errors import ConfigError
from medattn.inference import LoadedModel, load_model, predict_batch, predict_image
from medattn.inference.predict import fuse_zoom, gaussian_weights, zoom_windows, zoomed_logits
from test_inference import _count_forwards, _images, _input_folder, _save_tiny


@pytest.fixture
def checkpoint(tmp_path):
    return _save_tiny(tmp_path)


class Bright(torch.nn.Module):
    """A stand-in segmenter that marks bright pixels: logit = 10 (mean over channels - 0.5)."""

    def __init__(self) -> None:
        super().__init__()
        self.gain = torch.nn.Parameter(torch.tensor(10.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.gain * (x.mean(1, keepdim=True) - 0.5)


def _bright(**settings) -> LoadedModel:
    return LoadedModel(model=Bright().eval(), name="bright", source="test", input_size=(32, 32), **settings)


def _blob_frame() -> tuple[np.ndarray, np.ndarray]:
    """A dim 256 x 256 frame with a bright 6 x 6 blob: shrunk whole to 32 x 32 it fades to 0.37."""
    image = np.full((256, 256, 3), 50, np.uint8)
    image[100:106, 150:156] = 255
    mask = np.zeros((256, 256), bool)
    mask[100:106, 150:156] = True
    return image, mask


def test_zoom_one_is_todays_output(checkpoint):
    """zoom=1 (the default of a card without it) runs exactly the single whole-frame pass."""
    lm = load_model(checkpoint)
    assert lm.zoom == 1
    calls = _count_forwards(lm)
    images = _images(2, (96, 128, 3))
    default = predict_batch(lm, images)
    assert calls == [2]
    explicit = predict_batch(lm, images, zoom=1)
    zoomed_card = load_model(_save_tiny(checkpoint.parent, "tiny-zoom", inference={"zoom": 3}))
    overridden = predict_batch(zoomed_card, images, zoom=1)
    for a, b, c in zip(default, explicit, overridden, strict=True):
        np.testing.assert_array_equal(a.prob, b.prob)
        np.testing.assert_array_equal(a.prob, c.prob)
        np.testing.assert_array_equal(a.attention, c.attention)


@pytest.mark.parametrize("size", [(100, 60), (37, 91), (1000, 1000), (5, 7), (288, 384)])
@pytest.mark.parametrize("zoom", [1, 2, 3, 4])
def test_zoom_windows_cover_every_pixel(size, zoom):
    windows = zoom_windows(size, zoom)
    cover = np.zeros(size, int)
    weight = np.zeros(size)
    for top, left, h, w in windows:
        assert (h, w) == (-(-size[0] // zoom), -(-size[1] // zoom))
        assert top >= 0 and left >= 0 and top + h <= size[0] and left + w <= size[1]
        cover[top: top + h, left: left + w] += 1
        weight[top: top + h, left: left + w] += gaussian_weights(h, w).numpy()
    assert cover.min() >= 1 and weight.min() > 0
    per_axis = [len({win[k] for win in windows}) for k in (0, 1)]
    for side, n in zip(size, per_axis, strict=True):
        win = -(-side // zoom)
        assert n == (1 if win >= side else int(np.ceil((side - win) / max(1.0, win / 2))) + 1)
    if size == (1000, 1000):
        assert per_axis == [2 * zoom - 1] * 2  # 50 % overlap


def test_gaussian_weights_are_positive_and_peak_in_the_middle():
    g = gaussian_weights(33, 20)
    assert g.shape == (33, 20) and float(g.min()) > 0
    assert float(g[16, 9]) == pytest.approx(float(g.max())) and float(g[0, 0]) < 1e-3


def test_blending_keeps_a_constant_output():
    """Weights are normalised: a model that answers a constant gives that constant everywhere."""

    class Const(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.value = torch.nn.Parameter(torch.tensor(1.5))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.value.expand(x.shape[0], 1, *x.shape[2:])

    lm = LoadedModel(model=Const(), name="const", source="test", input_size=(16, 16))
    out = zoomed_logits(lm, _images(1, (50, 70, 3))[0], 3, tta=False)
    assert out.shape == (1, 1, 50, 70)
    torch.testing.assert_close(out, torch.full_like(out, 1.5))


def test_small_blob_is_found_with_zoom_only():
    lm = _bright()
    image, mask = _blob_frame()
    whole = predict_image(lm, image).prob
    assert whole.max() < 0.5  # too small for the whole frame at 32 x 32
    for zoom in (3, 4):
        prob = predict_image(lm, image, zoom=zoom).prob
        assert (prob[mask] > 0.5).mean() >= 0.5, zoom
        assert (prob[~mask] > 0.5).sum() <= mask.sum()  # the blob, not the frame
    assert lm.settings(zoom=4)["zoom"] == 4


def test_fusion_keeps_the_whole_frame_outline_of_what_it_found():
    """A component the whole frame found keeps its whole-frame map; only what it missed is added."""
    whole = torch.full((1, 1, 20, 20), -5.0)
    whole[..., 2:8, 2:8] = 3.0  # found: a lesion
    zoomed = torch.full((1, 1, 20, 20), -5.0)
    zoomed[..., 1:10, 1:10] = 9.0  # drawn larger by the windows
    zoomed[..., 14:17, 14:17] = 9.0  # missed by the whole frame
    prob = fuse_zoom(whole, zoomed, 0.5)
    np.testing.assert_array_equal(prob[:12, :12], torch.sigmoid(whole)[0, 0, :12, :12].numpy())
    assert (prob[14:17, 14:17] > 0.5).all() and (prob[14:17, 14:17] < torch.sigmoid(zoomed[0, 0, 15, 15]).item()).all()
    assert prob[18, 18] < 0.5


def test_zoom_composes_with_tta():
    """With TTA each batch (the whole frame, then the windows) runs unflipped and flipped."""
    lm = _bright()
    calls = _count_forwards(lm)
    image, mask = _blob_frame()
    prob = predict_image(lm, image, tta=True, zoom=2).prob
    assert calls == [1, 1, 1, 9, 9, 9]
    assert prob.shape == mask.shape


def test_card_zoom_round_trip(tmp_path):
    path = _save_tiny(tmp_path, "zoomed", inference={"input_size": [48, 64], "tta": False, "threshold": 0.5,
                                                      "zoom": 3})
    lm = load_model(path)
    assert lm.zoom == 3
    assert lm.settings() == {"input_size": [48, 64], "tta": False, "threshold": 0.5, "zoom": 3}
    assert lm.settings(zoom=1)["zoom"] == 1
    assert lm.describe_settings().endswith("zoom 3 (card)")
    assert lm.describe_settings(zoom=2).endswith("zoom 2 (given)")
    assert load_model(_save_tiny(tmp_path, "plain")).settings()["zoom"] == 1


@pytest.mark.parametrize("value", [0, -2, 1.5, True, "2"])
def test_bad_card_zoom_names_the_card(tmp_path, value):
    path = _save_tiny(tmp_path, "bad", inference={"zoom": value})
    with pytest.raises(ConfigError) as info:
        load_model(path)
    assert "bad.json: inference.zoom must be an integer >= 1" in str(info.value)


@pytest.mark.parametrize("value", [0, -1, 2.5, False])
def test_bad_zoom_argument_is_a_clear_error(checkpoint, value):
    lm = load_model(checkpoint)
    with pytest.raises(ConfigError, match="zoom must be an integer >= 1"):
        predict_batch(lm, _images(1), zoom=value)
    with pytest.raises(ConfigError, match="--zoom must be an integer >= 1"):
        lm.settings(zoom=value)


def test_predict_command_zoom_is_used_and_said(checkpoint, tmp_path, run_cli):
    src = _input_folder(tmp_path, 1)
    code, out, err = run_cli("predict", "--model", checkpoint, src, "--out", tmp_path / "card")
    assert code == 0, err
    assert "zoom 1 (card)" in out
    assert json.loads((tmp_path / "card" / "im0.json").read_text())["inference"]["zoom"] == 1
    code, out, err = run_cli("predict", "--model", checkpoint, src, "--out", tmp_path / "z2", "--zoom", "2")
    assert code == 0, err
    assert "inference settings: input 48x64 (card), TTA off (card), threshold 0.5 (card), zoom 2 (given)" in out
    assert json.loads((tmp_path / "z2" / "im0.json").read_text())["inference"]["zoom"] == 2


@pytest.mark.parametrize("value", ["0", "-3", "1.5", "two"])
def test_predict_command_refuses_a_bad_zoom(checkpoint, tmp_path, run_cli, value):
    src = _input_folder(tmp_path, 1)
    code, _, err = run_cli("predict", "--model", checkpoint, src, "--out", tmp_path / "o", "--zoom", value)
    assert code == 2 and "--zoom" in err
    assert not (tmp_path / "o").exists()


def test_evaluate_command_zoom(checkpoint, tmp_path, run_cli):
    from pathlib import Path

    samples = Path(__file__).resolve().parents[1] / "samples" / "kvasir"
    code, out, err = run_cli("evaluate", "--model", checkpoint, "--data", samples, "--zoom", "2", "--workers", "1",
                             "--format", "json")
    assert code == 0, err
    assert "TTA off (card), zoom 2 (given)" in err and json.loads(out)["count"] == 6
    code, _, err = run_cli("evaluate", "--model", checkpoint, "--data", samples, "--zoom", "0")
    assert code == 2 and "--zoom" in err
    code, _, err = run_cli("evaluate", "--pred", samples / "masks", "--gt", samples / "masks", "--zoom", "2")
    assert code != 0 and "--zoom need --model/--data" in err


def test_training_config_zoom_goes_into_the_card_section():
    from medattn.training.config import Config

    assert Config().dump()["inference"]["zoom"] == 1
    assert Config.model_validate({"inference": {"zoom": 3}}).inference.zoom == 3
    for bad in (0, 1.5, True):
        with pytest.raises(ValueError, match="zoom"):
            Config.model_validate({"inference": {"zoom": bad}})
