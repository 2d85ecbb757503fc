"""Lesion classifier, crops, colorization GAN losses, enhance_image, detection pieces and `medattn enhance`."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from medattn.enhance import enhance_image, fuse
from medattn.enhance.cawe import CAWE
from medattn.enhance.classifier import CropSet, auc, crops_of, train_classifier
from medattn.enhance.colorize import (
    ColorizationDiscriminator,
    ColorizationGenerator,
    SelfAttention,
    discriminator_loss,
    generator_loss,
    train_gan,
)
from medattn.enhance.detection import _from_monai, _to_monai, build_detector, detect, mask_boxes
from medattn.models import create


def test_lesion_classifier_reads_its_last_stage() -> None:
    torch.manual_seed(0)
    net = create("lesion_classifier", width=0.25).eval()
    assert net.cam_layer is net.encoder.layer4
    x = torch.rand(2, 1, 64, 64)
    assert net(x).shape == (2, 1)
    maps = CAWE(net)(x)
    assert maps.shape == (2, 64, 64) and float(maps.min()) >= 0 and float(maps.max()) <= 1


def test_crop_labels_follow_the_documented_rule() -> None:
    img = np.zeros((100, 100), np.uint8)
    mask = np.zeros((100, 100), bool)
    mask[:20, :20] = True  # 400 px: 16 % of the top-left 50x50 crop
    mask[60:62, 40:45] = True  # 10 px in the centre column of crops: below 10 % -> ambiguous, dropped
    crops, labels = crops_of(img, mask, crop_size=16, grid=3, crop_frac=0.5, pos_fraction=0.10)
    # crops at 0, 25, 50 in each axis; top-left (0,0) is positive; crops touching the speck are dropped
    assert labels.count(1.0) == 1
    assert all(c.shape == (16, 16) for c in crops)
    touched = {(y, x) for y in (0, 25, 50) for x in (0, 25, 50)
               if mask[y:y + 50, x:x + 50].any() and mask[y:y + 50, x:x + 50].mean() < 0.10}
    assert len(labels) == 9 - len(touched)


def test_auc_matches_pairwise_counting() -> None:
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 60).astype(float)
    s = rng.random(60).round(1)  # ties
    pos, neg = s[y == 1], s[y == 0]
    ref = np.mean([(p > n) + 0.5 * (p == n) for p in pos for n in neg])
    assert auc(y, s) == pytest.approx(ref)


def test_gan_losses_are_equations_3_to_6() -> None:
    torch.manual_seed(0)
    y, g = torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8)
    d_real, d_fake = torch.randn(2), torch.randn(2)
    fr, ff = [torch.randn(2, 4, 4, 4)], [torch.randn(2, 4, 4, 4)]
    total, parts = generator_loss(y, g, d_fake, fr, ff)
    l_c = (y - g).abs().mean() + (fr[0] - ff[0]).abs().mean()
    l_a = -torch.log(torch.sigmoid(d_fake)).mean()
    assert float(total) == pytest.approx(float(l_c + 0.5 * l_a), rel=1e-5)
    assert parts["adv"] == pytest.approx(float(l_a), rel=1e-5)
    l_d = (-torch.log(torch.sigmoid(d_real)) - torch.log(1 - torch.sigmoid(d_fake))).mean()
    assert float(discriminator_loss(d_real, d_fake)) == pytest.approx(float(l_d), rel=1e-5)


def test_gan_networks() -> None:
    torch.manual_seed(0)
    att = SelfAttention(16)
    x = torch.randn(1, 16, 4, 4)
    assert torch.equal(att(x), x)  # gamma starts at 0 (SAGAN)
    gen, disc = ColorizationGenerator(width=0.5).eval(), ColorizationDiscriminator(width=8)
    with torch.no_grad():
        out = gen(torch.rand(2, 1, 64, 64))
    assert out.shape == (2, 3, 64, 64) and float(out.min()) >= 0 and float(out.max()) <= 1
    logit, feats = disc(out)
    assert logit.shape == (2,) and len(feats) == 4
    assert any("parametrizations" in n for n, _ in disc.named_modules())  # spectral normalisation


def test_gan_training_uses_two_time_scales_and_writes_a_loadable_generator(tmp_path, monkeypatch) -> None:
    seen = []
    real_adam = torch.optim.Adam

    def spy(params, lr, **kw):
        seen.append(lr)
        return real_adam(params, lr=lr, **kw)

    monkeypatch.setattr(torch.optim, "Adam", spy)
    imgs = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    res = train_gan(imgs, steps=2, batch=2, width=0.5, run_dir=tmp_path, log_every=1, progress=False)
    assert seen == [pytest.approx(1e-4), pytest.approx(5e-4)]  # D's learning rate is 5x G's
    assert res.steps == 2 and len(res.history) == 2
    card = json.loads((tmp_path / "last.json").read_text())
    assert card["model"] == "colorizer" and card["input_size"] == [32, 32]
    from medattn.inference import load_model

    assert isinstance(load_model(tmp_path).model, ColorizationGenerator)


def test_enhance_image_and_the_cli(tmp_path, run_cli) -> None:
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    crops = CropSet(rng.integers(0, 256, (16, 32, 32), dtype=np.uint8), np.array([0, 1] * 8, np.float32))
    run = tmp_path / "clf"
    res = train_classifier(crops, crops, width=0.125, epochs=1, batch=8, run_dir=run, progress=False)
    gen = ColorizationGenerator(width=0.5).eval()
    img = rng.integers(0, 256, (50, 70, 3), dtype=np.uint8)
    out = enhance_image(img, res.model, gen, alpha=0.5, size=64, colorize="always")
    assert out["heatmap"].shape == (50, 70) and out["heatmap"].dtype == np.float32
    assert out["colorized"].shape == (50, 70, 3) and out["colorized"].dtype == np.uint8
    assert not out["grayscale"]
    np.testing.assert_array_equal(out["fused"], fuse(out["colorized"], out["heatmap"], 0.5))
    gray_out = enhance_image(img[..., 0], str(run))
    assert gray_out["colorized"] is None and gray_out["fused"].shape == (50, 70)

    from medattn.io import read_rgb, write_image

    src = tmp_path / "in"
    src.mkdir()
    write_image(src / "a.png", img)
    code, out_text, err = run_cli("enhance", "--model", str(run), str(src), "--out", str(tmp_path / "out"),
                                  "--colorizer", "none")
    assert code == 0, err
    assert "colorizer: none" in out_text
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == ["a_fused.png", "a_heatmap.png", "a_heatmap_overlay.png"]
    assert read_rgb(tmp_path / "out" / "a_fused.png").shape == (50, 70, 3)
    code, _, err = run_cli("enhance", "--model", str(tmp_path / "nope"), str(src), "--out", str(tmp_path / "o2"))
    assert code == 2 and err.startswith("error:") and "nope" in err


def test_only_grayscale_inputs_are_colorized_by_default(tmp_path, run_cli) -> None:
    """`colorize="auto"` (the default) colorizes gray inputs (one channel, or RGB with equal channels) and
    fuses a colour input in its own colours; "always" colorizes it too; "never" nothing. Same through
    `medattn enhance --colorize`, whose outputs and summary line say what happened."""
    from medattn.enhance._images import is_grayscale
    from medattn.io import write_image
    from medattn.models.hub import save_bundled

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    clf = create("lesion_classifier", backbone="resnet18", width=0.125).eval()
    gen = ColorizationGenerator(width=0.5).eval()
    colour = rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)
    gray = colour[..., 1]
    gray_rgb = np.repeat(gray[..., None], 3, axis=2)
    gray_rgb[0, 0, 2] += 1  # a converter's rounding: still gray
    assert is_grayscale(gray) and is_grayscale(gray_rgb) and not is_grayscale(colour)
    kept = enhance_image(colour, clf, gen, size=64)
    assert kept["colorized"] is None and not kept["grayscale"]
    np.testing.assert_array_equal(kept["fused"], fuse(colour, kept["heatmap"], 0.5))  # eq. 7 on the original
    for g in (gray, gray_rgb):
        done = enhance_image(g, clf, gen, size=64)
        assert done["grayscale"] and done["colorized"].shape == (40, 48, 3)
        np.testing.assert_array_equal(done["fused"], fuse(done["colorized"], done["heatmap"], 0.5))
    forced = enhance_image(colour, clf, gen, size=64, colorize="always")
    assert forced["colorized"] is not None
    np.testing.assert_array_equal(forced["fused"], fuse(forced["colorized"], forced["heatmap"], 0.5))
    assert enhance_image(gray, clf, gen, size=64, colorize="never")["colorized"] is None
    with pytest.raises(Exception, match="colorize must be one of"):
        enhance_image(gray, clf, gen, size=64, colorize="sometimes")

    col_opts = {"width": 0.5}
    col = save_bundled(gen, "tiny-col", col_opts, {"model": "colorizer", "task": "colorization",
                                                   "input_size": [32, 32]}, folder=tmp_path)
    cls = save_bundled(clf, "tiny-cls", {"backbone": "resnet18", "width": 0.125},
                       {"model": "lesion_classifier", "task": "classification", "input_size": [32, 32]},
                       folder=tmp_path)
    src = tmp_path / "in"
    src.mkdir()
    write_image(src / "c.png", colour)
    write_image(src / "g.png", gray)

    def run(out_name: str, *extra: str) -> tuple[int, str, str, list[str]]:
        out = tmp_path / out_name
        code, text, err = run_cli("enhance", "--model", cls, src, "--out", out, "--colorizer", col, *extra)
        return code, text, err, sorted(p.name for p in out.iterdir()) if out.is_dir() else []

    code, text, err, names = run("auto")
    assert code == 0, err
    assert [n for n in names if n.endswith("_colorized.png")] == ["g_colorized.png"]
    assert len(names) == 7 and "--colorize auto: colorized 1, kept colour 1" in text
    code, text, err, names = run("always", "--colorize", "always")
    assert code == 0, err
    assert [n for n in names if n.endswith("_colorized.png")] == ["c_colorized.png", "g_colorized.png"]
    assert "colorized 2" in text and "kept colour" not in text
    code, text, err, names = run("never", "--colorize", "never")
    assert code == 0, err
    assert not [n for n in names if n.endswith("_colorized.png")] and "colorizer: none" in text
    code, _, err, _ = run("bad", "--colorize", "sometimes")
    assert code == 2 and "--colorize must be one of" in err
    code, _, err = run_cli("enhance", "--model", cls, src, "--out", tmp_path / "o", "--colorizer", "none",
                           "--colorize", "always")
    assert code == 2 and "needs a colorizer" in err


def test_detection_arms_still_colorize_the_gray_images() -> None:
    """The FROC benchmark's colour arms colorize the gray version of each (colour) image, whatever
    `colorize="auto"` would do with the colour original."""
    from medattn.enhance._images import gray_of
    from medattn.enhance.colorize import colorize
    from medattn.enhance.detection import make_arms

    torch.manual_seed(0)
    rgb = np.random.default_rng(2).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    clf = create("lesion_classifier", backbone="resnet18", width=0.125).eval()
    gen = ColorizationGenerator(width=0.5).eval()
    arms = make_arms(rgb, clf, gen, arms=("color", "cawe", "color_cawe"), progress=False)
    for i in range(2):
        np.testing.assert_array_equal(arms["color"][i], colorize(gen, gray_of(rgb[i]), size=256))
        assert not np.array_equal(arms["color_cawe"][i], arms["cawe"][i])


def test_colorizer_choice(monkeypatch) -> None:
    """`--colorizer`: left out -> the first bundled colorizer (None when none ships), "none" -> no colorizer;
    `--colorize never` -> no colorizer; `--colorize always` without one -> an error."""
    import medattn.enhance as enhance
    from medattn.errors import ConfigError

    monkeypatch.setattr(enhance, "available_colorizers", lambda: ["col-b", "col-c"])
    assert enhance.resolve_colorizer(None) == "col-b"
    assert enhance.resolve_colorizer("None") is None and enhance.resolve_colorizer("none") is None
    assert enhance.resolve_colorizer("runs/colorizer") == "runs/colorizer"
    assert enhance.resolve_colorizer("runs/colorizer", "always") == "runs/colorizer"
    assert enhance.resolve_colorizer(None, "never") is None
    with pytest.raises(ConfigError, match="--colorizer none"):
        enhance.resolve_colorizer("none", "always")
    monkeypatch.setattr(enhance, "available_colorizers", lambda: [])
    assert enhance.resolve_colorizer(None) is None
    with pytest.raises(ConfigError, match="no colorizer is bundled"):
        enhance.resolve_colorizer(None, "always")


def test_mask_boxes_are_component_extents() -> None:
    m = np.zeros((40, 50), bool)
    m[5:10, 3:20] = True
    m[30:38, 40:49] = True
    m[0, 49] = True  # a one-pixel speck (< 0.1 % of the image) is ignored
    assert sorted(mask_boxes(m)) == [(3, 5, 20, 10), (40, 30, 49, 38)]


def test_detector_trains_and_detects_in_image_coordinates() -> None:
    b = np.array([[10.0, 4.0, 30.0, 50.0]], np.float32)
    np.testing.assert_array_equal(_from_monai(_to_monai(b)), b)
    assert _to_monai(b).tolist() == [[4.0, 10.0, 50.0, 30.0]]  # (row, col) order for MONAI
    torch.manual_seed(0)
    det = build_detector(64, width=8)
    det.train()
    x = torch.rand(2, 3, 64, 64)
    targets = [{"box": _to_monai(b), "label": torch.zeros(1, dtype=torch.long)}] * 2
    losses = det(list(x), targets)
    loss = losses[det.cls_key] + losses[det.box_reg_key]
    loss.backward()
    assert torch.isfinite(loss)
    boxes, scores = detect(det, (np.random.default_rng(0).random((2, 64, 64, 3)) * 255).astype(np.uint8))
    assert len(boxes) == 2 and all(bx.shape[1] == 4 and len(bx) == len(s) for bx, s in zip(boxes, scores, strict=True))


def test_localisation_scores_on_real_masks_with_a_controllable_classifier(shared_data, tmp_path) -> None:
    """Real Kvasir masks; the lesion region is made brighter and the classifier's evidence is brightness,
    so CAWE must point into the mask far above chance (the pointing game is then right, not the classifier;
    the trained classifier's score on real images is benchmarks/enhance_cawe.py)."""
    from torch import nn

    from medattn.data import pranet_split
    from medattn.data.types import Sample
    from medattn.enhance.classifier import localisation_scores
    from medattn.io import read_gray, read_mask, write_image

    samples = []
    for s in pranet_split(shared_data)["test_kvasir"][:6]:
        gray, mask = read_gray(s.image).astype(np.float32), read_mask(s.mask)
        img = np.clip(0.4 * gray + 140 * mask, 0, 255).astype(np.uint8)
        write_image(tmp_path / f"{s.id}.png", img)
        samples.append(Sample(id=s.id, image=tmp_path / f"{s.id}.png", mask=s.mask, dataset="kvasir-seg"))

    class Bright(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(1, 1, 8, stride=8)
            self.fc = nn.Linear(1, 1)
            with torch.no_grad():
                self.conv.weight.fill_(1 / 64)
                self.conv.bias.fill_(-0.45)  # only lesion-bright blocks respond
                self.fc.weight.fill_(10.0)
                self.fc.bias.fill_(0.0)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(torch.relu(self.conv(x)).mean(dim=(2, 3)))

    r = localisation_scores(Bright(), samples, size=128, progress=False)
    assert r["images"] == 6
    assert r["pointing"] >= r["pointing_chance"] + 0.4
    assert r["energy"] >= r["energy_chance"] + 0.2
