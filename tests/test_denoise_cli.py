"""``medattn denoise``: DICOM/NIfTI/PNG round trips, derived-series tags, modality checks; the data split."""

from __future__ import annotations

import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
import torch
from PIL import Image

from medattn.denoise.data import CTVolume, LDCTPairs, SimulationSettings, pydicom_data_file, split_by_volume
from medattn.errors import DatasetError
from medattn.models import create
from medattn.models.hub import save_bundled

SHIFT_HU = 10.0


@pytest.fixture(scope="module")
def shift_model(tmp_path_factory) -> Path:
    """A tiny CADN whose output is exactly input - 10 HU (zero noise head plus a bias)."""
    folder = tmp_path_factory.mktemp("weights")
    net = create("cadn", channels=[4, 8, 8], blocks=[1, 1, 1])
    with torch.no_grad():
        net.tail.bias.fill_(SHIFT_HU / 1000.0)
    return save_bundled(net, "shift", {"channels": [4, 8, 8], "blocks": [1, 1, 1]}, card={"model": "cadn"},
                        folder=folder)


def _series(shared_data: Path, tmp_path: Path, n: int = 2) -> Path:
    src = sorted((shared_data / "ct/totalsegmentator-example/dicom").iterdir())[:n]
    folder = tmp_path / "series"
    folder.mkdir()
    for f in src:
        shutil.copy(f, folder / f.name)
    return folder


@pytest.mark.data
def test_dicom_series_out_keeps_geometry_and_gets_new_uids(shared_data, tmp_path, run_cli, shift_model):
    series = _series(shared_data, tmp_path)
    code, _, err = run_cli("denoise", "--model", shift_model, series, "--out", tmp_path / "out")
    assert code == 0, err
    outs = sorted((tmp_path / "out" / "series").iterdir())
    ins = sorted(series.iterdir())
    assert [p.name for p in outs] == [p.name for p in ins]
    series_uids = set()
    for fin, fout in zip(ins, outs, strict=True):
        a, b = pydicom.dcmread(fin), pydicom.dcmread(fout)
        for kw in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", "SliceThickness",
                   "Rows", "Columns", "RescaleSlope", "RescaleIntercept", "StudyInstanceUID", "PatientID",
                   "BitsStored", "PixelRepresentation", "FrameOfReferenceUID", "InstanceNumber"):
            assert a.get(kw) == b.get(kw), kw
        assert b.SOPInstanceUID != a.SOPInstanceUID and b.SeriesInstanceUID != a.SeriesInstanceUID
        assert b.file_meta.MediaStorageSOPInstanceUID == b.SOPInstanceUID
        assert list(b.ImageType)[:2] == ["DERIVED", "SECONDARY"] and list(b.ImageType)[2:] == list(a.ImageType)[2:]
        assert b.SeriesDescription.endswith("[medattn denoised]")
        series_uids.add(b.SeriesInstanceUID)
        # pixels: re-encoded in the original dtype, HU shifted by the model, clipped at the dtype's floor
        pa, pb = a.pixel_array.astype(int), b.pixel_array
        assert pb.dtype == a.pixel_array.dtype
        expected = np.clip(pa - int(SHIFT_HU / float(a.RescaleSlope)), 0, None)
        assert np.abs(pb.astype(int) - expected).max() <= 1
    assert len(series_uids) == 1  # one new series for one input series


def test_single_ct_file_and_non_ct_refused(tmp_path, run_cli, shift_model):
    ct = pydicom_data_file("CT_small.dcm")
    mr = pydicom_data_file("MR_small.dcm")
    if ct is None or mr is None:
        pytest.skip("pydicom's test files are not installed")
    code, _, err = run_cli("denoise", "--model", shift_model, ct, "--out", tmp_path / "o")
    assert code == 0, err
    a, b = pydicom.dcmread(ct), pydicom.dcmread(tmp_path / "o" / ct.name)
    hu_a = a.pixel_array * float(a.RescaleSlope) + float(a.RescaleIntercept)
    hu_b = b.pixel_array * float(b.RescaleSlope) + float(b.RescaleIntercept)
    assert np.abs(hu_b - np.maximum(hu_a - SHIFT_HU, hu_b.min())).max() <= 1.0
    code, _, err = run_cli("denoise", "--model", shift_model, mr, "--out", tmp_path / "m")
    assert code == 2 and "modality is MR, not CT" in err and str(mr) in err
    assert not (tmp_path / "m" / mr.name).exists()
    code, _, err = run_cli("denoise", "--model", shift_model, mr, "--out", tmp_path / "m", "--force")
    assert code == 0, err and (tmp_path / "m" / mr.name).is_file()


def test_cr_radiograph_refused(tmp_path, run_cli, shift_model):
    cr = pydicom_data_file("RG1_UNCR.dcm")
    if cr is None:
        pytest.skip("pydicom-data is not installed")
    code, _, err = run_cli("denoise", "--model", shift_model, cr, "--out", tmp_path / "o")
    assert code == 2 and err.startswith("error: ") and "modality is CR" in err


def test_nifti_out_keeps_affine(tmp_path, run_cli, shift_model):
    rng = np.random.default_rng(0)
    vol = rng.integers(-1000, 1500, size=(24, 20, 3)).astype(np.int16)
    affine = np.array([[-0.8, 0.1, 0, 12.5], [0, 0.8, 0, -30], [0, 0, 2.5, 7], [0, 0, 0, 1]])
    nib.save(nib.Nifti1Image(vol, affine), tmp_path / "vol.nii.gz")
    code, _, err = run_cli("denoise", "--model", shift_model, tmp_path / "vol.nii.gz", "--out", tmp_path / "o")
    assert code == 0, err
    out = nib.load(tmp_path / "o" / "vol.nii.gz")
    np.testing.assert_allclose(out.affine, nib.load(tmp_path / "vol.nii.gz").affine)
    assert out.get_data_dtype() == np.int16
    np.testing.assert_allclose(np.asarray(out.dataobj), vol - SHIFT_HU, atol=1)


def test_png_and_tiff_same_format_out(tmp_path, run_cli, shift_model):
    img = np.tile(np.arange(0, 256, 8, dtype=np.uint8), (32, 1))
    Image.fromarray(img).save(tmp_path / "s.png")
    import tifffile

    hu16 = (np.arange(40 * 40).reshape(40, 40) % 2000 + 24).astype(np.uint16)  # HU + 1024
    tifffile.imwrite(tmp_path / "t.tif", hu16)
    code, _, err = run_cli("denoise", "--model", shift_model, tmp_path / "s.png", tmp_path / "t.tif",
                           "--out", tmp_path / "o")
    assert code == 0, err
    png = np.asarray(Image.open(tmp_path / "o" / "s.png"))
    assert png.shape == img.shape and png.dtype == np.uint8
    # 255 grey levels span the 400 HU window: -10 HU is about 6.4 levels down
    assert np.abs(png.astype(int) - np.clip(img.astype(int) - 6.375, 0, 255)).max() <= 1
    tif = tifffile.imread(tmp_path / "o" / "t.tif")
    assert tif.dtype == np.uint16 and np.abs(tif.astype(int) - np.clip(hu16.astype(int) - 10, 0, None)).max() <= 1


def test_unknown_model_and_missing_input(tmp_path, run_cli):
    code, _, err = run_cli("denoise", "--model", "cadnn", tmp_path, "--out", tmp_path / "o")
    assert code == 2 and "did you mean" in err
    code, _, err = run_cli("denoise", "--model", "bm3d", tmp_path / "nope.dcm", "--out", tmp_path / "o")
    assert code == 2 and "nope.dcm: no such file" in err


# -- data ------------------------------------------------------------------------------------------


def _vol(name: str, group: str = "", z: int = 3, size: int = 40) -> CTVolume:
    yy, xx = np.mgrid[:size, :size] - size / 2
    sl = np.where(xx**2 + yy**2 < (0.4 * size) ** 2, 40.0, -1000.0).astype(np.float32)
    return CTVolume(name=name, hu=np.stack([sl] * z), spacing=(1.0, 1.0), group=group)


def test_split_by_volume_keeps_groups_together() -> None:
    vols = [_vol("a", "scan1"), _vol("a_nifti", "scan1"), _vol("b"), _vol("c"), _vol("d")]
    split = split_by_volume(vols, test=["a"], val=["b"])
    assert split["test"] == ["a", "a_nifti"] and split["val"] == ["b"] and split["train"] == ["c", "d"]
    for seed in range(5):
        s = split_by_volume(vols, ratios=(3, 1, 1), seed=seed)
        parts = [set(s[k]) for k in ("train", "val", "test")]
        assert set().union(*parts) == {v.name for v in vols} and sum(map(len, parts)) == len(vols)
        assert any({"a", "a_nifti"} <= p for p in parts)
    with pytest.raises(DatasetError, match="both"):
        split_by_volume(vols, test=["a"], val=["a_nifti"])


@pytest.mark.data
def test_project_split_has_no_leakage(shared_data) -> None:
    from medattn.denoise.data import CT_SOURCES

    roles = {name: (group, role) for name, _, group, _, role in CT_SOURCES}
    test_groups = {g for g, r in roles.values() if r == "test"}
    other_groups = {g for g, r in roles.values() if r != "test"}
    assert test_groups and not (test_groups & other_groups)


def test_pairs_patches_are_repeatable(tmp_path) -> None:
    settings = SimulationSettings(dose=0.25, i0=1e5, n_angles=48)
    ds = LDCTPairs([_vol("v", size=40)], "patch", settings, patch_size=32, patches_per_epoch=4,
                   cache_dir=tmp_path)
    item = ds[1]
    assert item["image"].shape == item["target"].shape == (1, 32, 32)
    assert torch.equal(ds[1]["image"], item["image"])
    assert not torch.equal(item["image"], item["target"])
    assert any(tmp_path.rglob("*.npy"))  # the simulated slices are cached
    again = LDCTPairs([_vol("v", size=40)], "slice", settings, cache_dir=tmp_path)
    assert len(again) == 3 and again[0]["image"].shape == (1, 40, 40)
    np.testing.assert_array_equal(again.pair(0)[0], ds.pair(0)[0])
