"""Bad inputs on the command line: a clear error naming the file, the rest scored, no empty --out left behind."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from medattn.cli.inputs import MAX_ASPECT, MIN_SIDE, check_shape
from medattn.errors import MedattnIOError


def _png(path, h, w, value=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((h, w, 3), value, np.uint8)).save(path)
    return path


def test_denoise_refuses_an_infinite_voxel(run_cli, tmp_path):
    import nibabel as nib

    vol = np.zeros((16, 16, 4), np.float32)
    vol[3, 3, 1] = np.inf
    src = tmp_path / "inf.nii.gz"
    nib.save(nib.Nifti1Image(vol, np.eye(4)), src)
    code, _, err = run_cli("denoise", src, "--model", "bm3d", "--out", tmp_path / "out")
    assert code == 2 and "inf.nii.gz" in err and "infinite" in err
    assert not (tmp_path / "out").exists()


def test_enhance_on_a_folder_named_like_an_image_fails(run_cli, tmp_path):
    folder = tmp_path / "x.png"
    folder.mkdir()
    (folder / "notes.txt").write_text("no image here")
    code, _, err = run_cli("enhance", f"{folder}/", "--model", "cawe-lesion", "--out", tmp_path / "out")
    assert code == 2 and "x.png" in err and "no image files" in err
    assert not (tmp_path / "out").exists()


def test_datasets_check_names_a_decompression_bomb(run_cli, tmp_path, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # a 100x100 picture is a "bomb" at this limit
    _png(tmp_path / "ds" / "images" / "a.png", 100, 100)
    _png(tmp_path / "ds" / "masks" / "a.png", 100, 100)
    code, out, err = run_cli("datasets", "check", tmp_path / "ds", "--json", "--workers", "1")
    assert code == 0 and "Traceback" not in out + err
    assert "a.png" in out and "decompression bomb" in out


def test_evaluate_reports_a_bad_file_and_scores_the_rest(run_cli, tmp_path):
    for name in ("a", "b", "c"):
        _png(tmp_path / "gt" / f"{name}.png", 32, 32, 255)
        _png(tmp_path / "pred" / f"{name}.png", 32, 32, 255)
    (tmp_path / "pred" / "b.png").write_bytes(b"not a png")
    code, out, err = run_cli("evaluate", "--pred", tmp_path / "pred", "--gt", tmp_path / "gt")
    assert code == 1 and "b.png" in err and "1 of 3 pairs could not be read" in err
    assert "| 2 |" in out  # the two good pairs are scored


@pytest.mark.parametrize(("h", "w"), [(1, 1), (3, 20000), (20, 400)])
def test_predict_refuses_a_degenerate_image(run_cli, tmp_path, h, w):
    src = _png(tmp_path / f"img_{h}x{w}.png", h, w)
    code, _, err = run_cli("predict", src, "--model", "bsanet-polyp", "--out", tmp_path / "out")
    assert code == 2 and src.name in err and f"{w}x{h} pixels" in err
    assert not (tmp_path / "out").exists()


def test_predict_leaves_no_empty_out_folder_on_failure(run_cli, tmp_path):
    good = _png(tmp_path / "in" / "a.png", 64, 64)
    blob = good.read_bytes()
    (tmp_path / "in" / "a.png").write_bytes(blob[: len(blob) // 2])  # the header reads, the pixels do not
    code, _, err = run_cli("predict", tmp_path / "in", "--model", "bsanet-polyp", "--out", tmp_path / "out")
    assert code == 2 and "a.png" in err
    assert not (tmp_path / "out").exists()


def test_shape_limits(tmp_path):
    check_shape(_png(tmp_path / "ok.png", MIN_SIDE, MIN_SIDE))
    check_shape(_png(tmp_path / "wide.png", MIN_SIDE, int(MIN_SIDE * MAX_ASPECT)))
    with pytest.raises(MedattnIOError, match=r"strip\.png: is 170x16 pixels: a 11:1 strip"):
        check_shape(_png(tmp_path / "strip.png", 16, 170))
    with pytest.raises(MedattnIOError, match="too small"):
        check_shape(_png(tmp_path / "small.png", MIN_SIDE - 1, 64))
