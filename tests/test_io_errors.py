"""Every bad-input case gives a MedattnIOError naming the file and the problem, and one CLI line."""

from __future__ import annotations

import os
import re
import struct
import zlib
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
import tifffile
from PIL import Image

from medattn.errors import MedattnIOError
from medattn.io import read_gray, read_image, write_image

CT_SMALL = Path(pydicom.__file__).parent / "data" / "test_files" / "CT_small.dcm"


def _raises(path: Path, pattern: str, **kwargs) -> MedattnIOError:
    with pytest.raises(MedattnIOError, match=pattern) as info:
        read_image(path, **kwargs)
    assert str(info.value).startswith(str(path) + ": ")
    return info.value


def _png(tmp_path: Path, name: str = "a.png", size: tuple[int, int] = (64, 64)) -> Path:
    rng = np.random.default_rng(0)
    path = tmp_path / name
    Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(path)
    return path


def _png_header_only(path: Path, width: int, height: int) -> Path:
    """A PNG whose IHDR claims ``width`` x ``height`` (a decompression bomb's header)."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 1000)  # far too little data: it must never be decoded
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    return path


# --- empty, missing, unreadable -------------------------------------------------------------

@pytest.mark.parametrize("name", ["empty.png", "empty.dcm", "empty.nii.gz", "empty"])
def test_empty_file(tmp_path, name):
    (tmp_path / name).write_bytes(b"")
    _raises(tmp_path / name, "file is empty")


def test_missing_file(tmp_path):
    _raises(tmp_path / "nope.png", "no such file or directory")


def test_permission_denied(tmp_path, monkeypatch):
    path = _png(tmp_path)
    if os.geteuid() != 0:
        path.chmod(0)
        try:
            _raises(path, "permission denied")
        finally:
            path.chmod(0o644)
    else:  # root ignores file modes: make the open itself fail as it would for a user
        import medattn.io.base as base

        def denied(*args, **kwargs):
            raise PermissionError(13, "Permission denied")

        monkeypatch.setattr(base, "open", denied, raising=False)
        _raises(path, "permission denied")


def test_directory_without_images(tmp_path):
    (tmp_path / "empty").mkdir()
    _raises(tmp_path / "empty", "directory is empty")
    (tmp_path / "text").mkdir()
    (tmp_path / "text" / "a.txt").write_text("hello")
    _raises(tmp_path / "text", "holds no readable image: none of its 1 files is DICOM")


# --- truncated ------------------------------------------------------------------------------

def test_truncated_png(tmp_path):
    path = _png(tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    _raises(path, "PNG file is truncated")


def test_truncated_jpeg(tmp_path):
    path = tmp_path / "a.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    _raises(path, "JPEG file is truncated")


def test_truncated_dicom(tmp_path):
    data = CT_SMALL.read_bytes()
    path = tmp_path / "cut.dcm"
    path.write_bytes(data[: len(data) // 2])  # inside the pixel data
    _raises(path, "DICOM file is truncated")
    path.write_bytes(data[:1000])  # inside the header: no pixel data element was reached
    _raises(path, "DICOM file is truncated")


def test_truncated_tiff_nifti_npy(tmp_path):
    tifffile.imwrite(tmp_path / "a.tif", np.ones((32, 32), np.float32))
    nib.save(nib.Nifti1Image(np.random.default_rng(0).random((16, 16, 8)).astype(np.float32), np.eye(4)),
             tmp_path / "a.nii.gz")
    np.save(tmp_path / "a.npy", np.ones((32, 32), np.float32))
    for name, pattern in [("a.tif", "TIFF file is truncated"), ("a.nii.gz", "NIfTI file is truncated"),
                          ("a.npy", r"\.npy file is truncated")]:
        data = (tmp_path / name).read_bytes()
        (tmp_path / name).write_bytes(data[: int(len(data) * 0.6)])
        _raises(tmp_path / name, pattern)


# --- wrong content for the extension --------------------------------------------------------

def test_text_named_dcm(tmp_path):
    (tmp_path / "x.dcm").write_text("patient list\nnot an image\n")
    _raises(tmp_path / "x.dcm", r"not a valid DICOM file: content matches no supported image format \(looks like text\)")


def test_garbage_with_image_extension(tmp_path):
    (tmp_path / "x.png").write_bytes(bytes(range(256)) * 4)
    _raises(tmp_path / "x.png", r"not a valid PNG file: content matches no supported image format \(starts with bytes")
    (tmp_path / "x.weird").write_bytes(b"\x00\x01\x02" * 100)
    _raises(tmp_path / "x.weird", "content matches no supported image format")


def test_jpeg_named_png_and_dicom_named_png_are_read(tmp_path):
    arr = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    Image.fromarray(arr).save(tmp_path / "x.png", format="JPEG")
    assert read_image(tmp_path / "x.png").meta.format == "jpeg"
    (tmp_path / "ct.png").write_bytes(CT_SMALL.read_bytes())
    assert read_image(tmp_path / "ct.png").meta.modality == "CT"


# --- decompression bomb ---------------------------------------------------------------------

def test_bomb_png_header_default_limit(tmp_path):
    # 30000 x 30000 = 900 MP claimed by the header: refused before any pixel is decoded
    path = _png_header_only(tmp_path / "bomb.png", 30000, 30000)
    _raises(path, "exceeds the limit of 100,000,000 pixels.*decompression bomb")
    path = _png_header_only(tmp_path / "big.png", 12000, 10000)  # 120 MP: past ours, under Pillow's error
    _raises(path, "120,000,000 pixels exceeds the limit of 100,000,000")


def test_bomb_limit_is_configurable(tmp_path, monkeypatch):
    path = _png(tmp_path)  # 4096 pixels
    _raises(path, "exceeds the limit of 1,000", max_pixels=1000)
    assert read_image(path, max_pixels=4096).array.shape == (64, 64, 3)
    monkeypatch.setenv("MEDATTN_MAX_PIXELS", "1000")
    _raises(path, "exceeds the limit of 1,000 .*MEDATTN_MAX_PIXELS")
    with pytest.raises(MedattnIOError, match="exceeds the limit"):
        read_gray(path)
    assert read_image(path, max_pixels=None).array.shape == (64, 64, 3)  # explicit value wins
    monkeypatch.setenv("MEDATTN_MAX_PIXELS", "0")
    assert read_image(path).array.shape == (64, 64, 3)


def test_bomb_from_headers_of_other_formats(tmp_path):
    ds = pydicom.dcmread(CT_SMALL)
    ds.Rows = ds.Columns = 40000
    ds.save_as(tmp_path / "big.dcm")
    _raises(tmp_path / "big.dcm", "1,600,000,000 pixels exceeds")
    hdr = nib.Nifti1Header()
    hdr.set_data_shape((4000, 4000, 100))
    hdr.set_data_dtype(np.int16)
    hdr["vox_offset"] = 352
    (tmp_path / "big.nii").write_bytes(hdr.binaryblock + b"\x00" * 4 + b"\x00" * 1024)
    _raises(tmp_path / "big.nii", "volume of 100 x 4000x4000 = 1,600,000,000 voxels exceeds the limit of 1,000,000,000")
    with open(tmp_path / "big.npy", "wb") as fh:
        np.lib.format.write_array_header_1_0(fh, {"descr": "<f4", "fortran_order": False, "shape": (20000, 20000)})
    _raises(tmp_path / "big.npy", "400,000,000 pixels exceeds")


# --- content problems -----------------------------------------------------------------------

def test_dicom_without_pixel_data(tmp_path):
    ds = pydicom.dcmread(CT_SMALL)
    del ds.PixelData
    ds.save_as(tmp_path / "nopix.dcm")
    _raises(tmp_path / "nopix.dcm", r"DICOM file has no pixel data \(CT Image Storage\)")


@pytest.mark.parametrize("ext", ["tif", "nii.gz", "npy"])
def test_nan_inf(tmp_path, ext):
    arr = np.zeros((3, 8, 8), np.float32)
    arr[0, 1, 1] = np.nan
    arr[2, 3, 3] = np.inf
    arr[2, 3, 4] = -np.inf
    write_image(tmp_path / f"a.{ext}", arr)
    _raises(tmp_path / f"a.{ext}", r"contains 3 non-finite values \(1 NaN, 2 Inf\)")


def test_unsupported_dimensionality(tmp_path):
    np.save(tmp_path / "a4.npy", np.zeros((2, 3, 4, 5), np.float32))
    _raises(tmp_path / "a4.npy", r"unsupported dimensionality: array of shape \(2, 3, 4, 5\)")
    np.save(tmp_path / "a1.npy", np.zeros(10, np.float32))
    _raises(tmp_path / "a1.npy", "unsupported dimensionality")
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 3, 5), np.float32), np.eye(4)), tmp_path / "t.nii.gz")
    _raises(tmp_path / "t.nii.gz", r"unsupported dimensionality: NIfTI of shape \(4, 4, 3, 5\)")
    tifffile.imwrite(tmp_path / "t.tif", np.zeros((2, 5, 8, 8), np.uint8), photometric="minisblack",
                     metadata={"axes": "TZYX"})
    _raises(tmp_path / "t.tif", "unsupported dimensionality: TIFF series")


# --- CLI ------------------------------------------------------------------------------------

@pytest.mark.parametrize("case", ["empty", "text", "missing", "truncated"])
def test_cli_info_bad_file_is_one_line(tmp_path, run_cli, case):
    path = {"empty": tmp_path / "e.png", "text": tmp_path / "t.dcm", "missing": tmp_path / "m.png",
            "truncated": tmp_path / "c.dcm"}[case]
    if case == "empty":
        path.write_bytes(b"")
    elif case == "text":
        path.write_text("hello")
    elif case == "truncated":
        path.write_bytes(CT_SMALL.read_bytes()[:20000])
    code, out, err = run_cli("info", path)
    assert code != 0 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {path}: ")


def test_cli_info_prints_fields(tmp_path, run_cli):
    src = read_image(CT_SMALL)
    write_image(tmp_path / "ct.nii.gz", src.array[None], src.meta.__class__(spacing=(2.0, 0.5, 0.5)))
    code, out, err = run_cli("info", CT_SMALL, tmp_path / "ct.nii.gz")
    assert code == 0, err
    first, second = out.split("\n\n")
    for pattern in (r"format\s+dicom\n", r"modality\s+CT\n", r"shape\s+128 x 128 \(HW\)\n",
                    r"spacing\s+0.6615 x 0.6615 mm\n", r"dtype\s+float32 \(stored int16\)\n"):
        assert re.search(pattern, first), pattern
    assert re.search(r"format\s+nifti\n", second)
    assert "1 x 128 x 128 (ZHW)" in out and "2 x 0.5 x 0.5 mm" in out
    lo, hi = float(src.array.min()), float(src.array.max())
    assert f"{lo:.6g} .. {hi:.6g}" in out


def test_writer_refuses_colour_nifti(tmp_path):
    rgb = read_image(_png(tmp_path))
    with pytest.raises(MedattnIOError, match=r"NIfTI writer stores 2-D or 3-D gray arrays.*\(colour\)"):
        write_image(tmp_path / "rgb.nii.gz", rgb.array, rgb.meta)
