"""Spacing-aware denoising: slices off the model's trained grid are resampled to it and back."""

from __future__ import annotations

import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
import torch
from PIL import Image

from medattn.denoise.apply import Denoiser, card_grid
from medattn.denoise.data import pydicom_data_file
from medattn.models import create
from medattn.models.hub import save_bundled

SHIFT_HU = 10.0
GRID_MM = 0.9


@pytest.fixture(scope="module")
def grid_model(tmp_path_factory) -> Path:
    """A tiny CADN whose output is exactly input - 10 HU, with a card saying it was trained on 0.9 mm pixels."""
    net = create("cadn", channels=[4, 8, 8], blocks=[1, 1, 1])
    with torch.no_grad():
        net.tail.bias.fill_(SHIFT_HU / 1000.0)
    card = {"model": "cadn", "task": "denoising", "data": {"simulation": {"spacing_mm": GRID_MM}}}
    return save_bundled(net, "grid", {"channels": [4, 8, 8], "blocks": [1, 1, 1]}, card=card,
                        folder=tmp_path_factory.mktemp("weights"))


def _checker(n: int = 64) -> np.ndarray:
    """A one-pixel checkerboard of +-100 HU on 40 HU: it survives only on its own grid."""
    yy, xx = np.mgrid[:n, :n]
    return (40.0 + 100.0 * np.where((yy + xx) % 2 == 0, 1.0, -1.0)).astype(np.float32)


def test_card_grid_reads_one_size_or_a_range() -> None:
    assert card_grid({"data": {"simulation": {"spacing_mm": 0.98}}}) == (0.98, 0.98)
    assert card_grid({"data": {"simulation": {"spacing_mm": [1.0, 0.6]}}}) == (0.6, 1.0)
    assert card_grid({"data": {"simulation": {"spacing_mm": None}}}) is None
    assert card_grid({}) is None


def test_denoiser_resamples_only_off_its_grid() -> None:
    x = _checker()
    den = Denoiser(lambda hu: hu - SHIFT_HU, "shift", (0.6, 1.0))
    np.testing.assert_allclose(den(x, (0.7, 0.7)), x - SHIFT_HU)          # inside the range: untouched
    np.testing.assert_allclose(den(x, 0.98), x - SHIFT_HU)                # within 3 % of the range
    off = den(x, (0.3, 0.3))                                              # 2x finer: run at 0.6 mm and back
    assert off.shape == x.shape
    assert np.abs(off[4:-4, 4:-4] - (40.0 - SHIFT_HU)).max() < 20         # the checkerboard is averaged away
    unknown = den(x, None)
    np.testing.assert_allclose(unknown, x - SHIFT_HU)
    notes = " | ".join(den.notes)
    assert "resampled to 0.6 mm" in notes and "pixel spacing unknown" in notes and "on the model's grid" in notes
    with pytest.raises(ValueError, match="positive"):
        den(x, (0.0, 0.5))
    anygrid = Denoiser(lambda hu: hu - SHIFT_HU, "bm3d")                  # no grid: never resampled, no notes
    np.testing.assert_allclose(anygrid(x, (0.3, 0.3)), x - SHIFT_HU)
    assert not anygrid.notes


def _dicom_at(tmp_path: Path, spacing: float) -> Path:
    src = pydicom_data_file("CT_small.dcm")
    if src is None:
        pytest.skip("pydicom's test files are not installed")
    ds = pydicom.dcmread(src)
    ds.PixelSpacing = [spacing, spacing]
    folder = tmp_path / f"in_{spacing:g}"
    folder.mkdir()
    ds.save_as(folder / "ct.dcm")
    return folder / "ct.dcm"


@pytest.mark.parametrize("spacing,resampled", [(GRID_MM, False), (GRID_MM / 2, True)])
def test_dicom_spacing_is_read_and_acted_on(tmp_path, run_cli, grid_model, spacing, resampled) -> None:
    from medattn.io import read_image

    path = _dicom_at(tmp_path, spacing)
    code, out, err = run_cli("denoise", "--model", grid_model, path, "--out", tmp_path / "o")
    assert code == 0, err
    before = read_image(path).array.astype(np.float32)
    after = read_image(tmp_path / "o" / "ct.dcm").array.astype(np.float32)
    exact = np.abs(after - (before - SHIFT_HU)).max() <= 1.0
    assert exact != resampled
    assert ("resampled to 0.9 mm" in out) == resampled
    assert f"{path}: {spacing:.3g} mm pixels" in out


@pytest.mark.parametrize("zoom,resampled", [(GRID_MM, False), (0.45, True)])
def test_nifti_voxel_size_is_read_and_acted_on(tmp_path, run_cli, grid_model, zoom, resampled) -> None:
    vol = np.stack([_checker(48)] * 2, axis=-1).astype(np.int16)  # (x, y, z)
    nib.save(nib.Nifti1Image(vol, np.diag([zoom, zoom, 3.0, 1.0])), tmp_path / "v.nii.gz")
    code, out, err = run_cli("denoise", "--model", grid_model, tmp_path / "v.nii.gz", "--out", tmp_path / "o")
    assert code == 0, err
    got = np.asarray(nib.load(tmp_path / "o" / "v.nii.gz").dataobj).astype(np.float32)
    exact = np.abs(got - (vol - SHIFT_HU)).max() <= 1.0
    assert exact != resampled
    assert ("resampled to 0.9 mm" in out) == resampled


def test_png_without_spacing_warns_and_spacing_option_applies(tmp_path, run_cli, grid_model) -> None:
    img = np.full((48, 48), 128, np.uint8)
    img[::2, ::2] = 200
    Image.fromarray(img).save(tmp_path / "s.png")
    code, out, err = run_cli("denoise", "--model", grid_model, tmp_path / "s.png", "--out", tmp_path / "a")
    assert code == 0, err
    assert "warning:" in err and "s.png: pixel spacing unknown" in err and "--spacing" in err
    code, out, err = run_cli("denoise", "--model", grid_model, tmp_path / "s.png", "--out", tmp_path / "b",
                             "--spacing", "0.45")
    assert code == 0, err
    assert "resampled to 0.9 mm" in out and "warning" not in err
    a = np.asarray(Image.open(tmp_path / "a" / "s.png")).astype(int)
    b = np.asarray(Image.open(tmp_path / "b" / "s.png")).astype(int)
    assert a.std() > 2 * b.std()  # the fine pattern survives only without resampling


def test_nan_volume_is_refused_and_nothing_is_written(tmp_path, run_cli, grid_model) -> None:
    vol = np.zeros((16, 16, 2), np.float32)
    vol[3, 4, 1] = np.inf
    vol[5, 5, 0] = np.nan
    nib.save(nib.Nifti1Image(vol, np.diag([GRID_MM, GRID_MM, 3.0, 1.0])), tmp_path / "bad.nii.gz")
    code, _, err = run_cli("denoise", "--model", grid_model, tmp_path / "bad.nii.gz", "--out", tmp_path / "o")
    assert code != 0
    assert "bad.nii.gz" in err and "2 NaN or infinite voxel(s)" in err
    assert not (tmp_path / "o").exists()  # no output folder left behind


def test_a_failing_input_leaves_earlier_outputs_unwritten(tmp_path, run_cli, grid_model) -> None:
    good = np.zeros((16, 16, 1), np.float32)
    nib.save(nib.Nifti1Image(good, np.diag([GRID_MM, GRID_MM, 3.0, 1.0])), tmp_path / "a_good.nii.gz")
    bad = good.copy()
    bad[0, 0, 0] = np.nan
    nib.save(nib.Nifti1Image(bad, np.diag([GRID_MM, GRID_MM, 3.0, 1.0])), tmp_path / "b_bad.nii.gz")
    (tmp_path / "o").mkdir()
    (tmp_path / "o" / "keep.txt").write_text("x")
    code, _, err = run_cli("denoise", "--model", grid_model, tmp_path / "a_good.nii.gz", tmp_path / "b_bad.nii.gz",
                           "--out", tmp_path / "o")
    assert code != 0 and "b_bad.nii.gz" in err
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["keep.txt"]


def test_zero_spacing_in_a_dicom_is_treated_as_unknown(tmp_path, run_cli, grid_model) -> None:
    path = _dicom_at(tmp_path, 0.0)
    code, _, err = run_cli("denoise", "--model", grid_model, path, "--out", tmp_path / "o")
    assert code == 0, err
    assert f"{path}: pixel spacing unknown" in err


def test_copy_of_series_keeps_file_names(tmp_path, run_cli, grid_model) -> None:
    path = _dicom_at(tmp_path, GRID_MM)
    series = tmp_path / "series"
    series.mkdir()
    for k in range(2):
        shutil.copy(path, series / f"s{k}.dcm")
    code, out, err = run_cli("denoise", "--model", grid_model, series, "--out", tmp_path / "o")
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "o" / "series").iterdir()) == ["s0.dcm", "s1.dcm"]
    assert "(2 slices)" in out


def test_dicom_without_rescale_is_warned_about(tmp_path, run_cli, grid_model) -> None:
    path = _dicom_at(tmp_path, GRID_MM)
    ds = pydicom.dcmread(path)
    del ds.RescaleIntercept
    del ds.RescaleSlope
    ds.save_as(path)
    code, _, err = run_cli("denoise", "--model", grid_model, path, "--out", tmp_path / "o")
    assert code == 0, err
    assert "warning:" in err and f"{path}: no RescaleIntercept: stored values taken as HU" in err


def test_keep_noise_blends_back_a_share_of_the_estimated_noise(tmp_path, run_cli, grid_model) -> None:
    x = _checker()
    den = Denoiser(lambda hu: hu - SHIFT_HU, "shift", (0.6, 1.0), keep_noise=0.25)
    np.testing.assert_allclose(den(x, 0.8), x - 0.75 * SHIFT_HU, rtol=1e-6)
    with pytest.raises(Exception, match=r"keep_noise must be in \[0, 1\]"):
        Denoiser(lambda hu: hu, "x", keep_noise=1.5)
    vol = np.zeros((16, 16, 1), np.int16)
    nib.save(nib.Nifti1Image(vol, np.diag([GRID_MM, GRID_MM, 3.0, 1.0])), tmp_path / "v.nii.gz")
    code, _, err = run_cli("denoise", "--model", grid_model, tmp_path / "v.nii.gz", "--out", tmp_path / "o",
                           "--keep-noise", "0.5")
    assert code == 0, err
    got = np.asarray(nib.load(tmp_path / "o" / "v.nii.gz").dataobj).astype(np.float32)
    assert np.abs(got - (-SHIFT_HU / 2)).max() <= 1.0  # half of the estimated 10 HU kept


def test_card_keep_noise_is_the_default(tmp_path, run_cli) -> None:
    from medattn.denoise.apply import card_keep_noise, load_denoiser

    net = create("cadn", channels=[4, 8, 8], blocks=[1, 1, 1])
    with torch.no_grad():
        net.tail.bias.fill_(SHIFT_HU / 1000.0)
    card = {"model": "cadn", "task": "denoising", "inference": {"keep_noise": 0.25}}
    path = save_bundled(net, "keep", {"channels": [4, 8, 8], "blocks": [1, 1, 1]}, card=card, folder=tmp_path)
    assert card_keep_noise(card) == 0.25 and card_keep_noise({}) == 0.0
    den, _ = load_denoiser(str(path))
    assert den.keep_noise == 0.25
    np.testing.assert_allclose(den(np.zeros((16, 16), np.float32)), -0.75 * SHIFT_HU, atol=1e-3)
    assert load_denoiser(str(path), keep_noise=0.0)[0].keep_noise == 0.0


def _turned_mean(net: torch.nn.Module, hu: np.ndarray) -> np.ndarray:
    """The 8-fold self-ensemble computed independently, with numpy's rot90 / fliplr."""
    outs = []
    for k in range(4):
        for flip in (False, True):
            t = np.rot90(hu, k)
            t = np.fliplr(t) if flip else t
            with torch.no_grad():
                y = net(torch.from_numpy(np.ascontiguousarray(t, np.float32))[None, None] / 1000.0)[0, 0].numpy()
            y = np.fliplr(y) if flip else y
            outs.append(np.rot90(y, -k) * 1000.0)
    return np.mean(outs, axis=0)


def test_self_ensemble_averages_the_eight_turned_outputs(tmp_path, run_cli) -> None:
    from medattn.denoise.apply import card_tta, load_denoiser, torch_denoiser

    torch.manual_seed(3)
    net = create("cadn", channels=[4, 8, 8], blocks=[1, 1, 1]).eval()
    with torch.no_grad():  # the output layer starts at zero (identity): make the net do something
        for param in net.parameters():
            param.add_(0.05 * torch.randn_like(param))
    hu = (40.0 + 30.0 * np.random.default_rng(0).standard_normal((24, 40))).astype(np.float32)  # not square
    plain, ensemble = torch_denoiser(net)(hu), torch_denoiser(net, tta=True)(hu)
    np.testing.assert_allclose(ensemble, _turned_mean(net, hu), atol=1e-3)
    assert ensemble.shape == hu.shape and np.abs(ensemble - plain).max() > 1e-2  # a random net is not symmetric

    card = {"model": "cadn", "task": "denoising", "inference": {"tta": True}}
    path = save_bundled(net, "tta", {"channels": [4, 8, 8], "blocks": [1, 1, 1]}, card=card, folder=tmp_path)
    assert card_tta(card) and not card_tta({})
    with pytest.raises(Exception, match=r"inference\.tta must be true or false"):
        card_tta({"inference": {"tta": "yes"}})
    den, description = load_denoiser(str(path))
    assert "self-ensemble" in description
    np.testing.assert_allclose(den(hu), ensemble, atol=1e-4)
    off, description = load_denoiser(str(path), tta=False)
    assert "self-ensemble" not in description
    np.testing.assert_allclose(off(hu), plain, atol=1e-4)

    import tifffile

    tifffile.imwrite(tmp_path / "s.tif", hu)
    for flag, want in (("--tta", ensemble), ("--no-tta", plain)):
        code, _, err = run_cli("denoise", "--model", path, tmp_path / "s.tif", "--out", tmp_path / flag, flag)
        assert code == 0, err
        np.testing.assert_allclose(tifffile.imread(tmp_path / flag / "s.tif"), want, atol=1e-3)
