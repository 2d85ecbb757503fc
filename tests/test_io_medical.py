"""DICOM (single, multi-frame, series, writing), NIfTI and .npy, CT windows; pydicom/nibabel as references."""

from __future__ import annotations

import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest

from medattn.io import WINDOWS, ImageMeta, apply_window, read_dicom_series, read_gray, read_image, write_image

PYDICOM_FILES = Path(pydicom.__file__).parent / "data" / "test_files"


def _testdata(name: str) -> Path:
    """A pydicom / pydicom-data test file, found locally (get_testdata_file would try the network)."""
    for root in (PYDICOM_FILES, ):
        if (root / name).exists():
            return root / name
    try:
        import data_store  # pydicom-data

        path = Path(data_store.__file__).parent / "data" / name
    except ImportError:
        path = Path("/nonexistent")
    if not path.exists():
        pytest.skip(f"{name} not installed (pip install pydicom-data)")
    return path


def test_ct_small_is_in_hu():
    path = _testdata("CT_small.dcm")
    img = read_image(path)
    ds = pydicom.dcmread(path)
    expected = ds.pixel_array.astype(np.float64) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    assert img.meta.format == "dicom" and img.meta.modality == "CT" and img.meta.layout == "HW"
    assert img.array.dtype == np.float32 and img.meta.original_dtype == "int16"
    np.testing.assert_array_equal(img.array, expected.astype(np.float32))
    assert img.meta.spacing == pytest.approx([float(v) for v in ds.PixelSpacing])
    assert img.meta.dicom.PatientName == ds.PatientName and "PixelData" not in img.meta.dicom


def test_enhanced_multiframe_rescale_from_functional_groups():
    path = _testdata("eCT_Supplemental.dcm")
    img = read_image(path)
    ds = pydicom.dcmread(path)
    pvt = ds.SharedFunctionalGroupsSequence[0].PixelValueTransformationSequence[0]
    expected = ds.pixel_array * float(pvt.RescaleSlope) + float(pvt.RescaleIntercept)
    assert img.meta.layout == "ZHW" and img.array.shape == (2, 512, 512)
    np.testing.assert_array_equal(img.array, expected.astype(np.float32))
    pm = ds.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0]
    z = [float(f.PlanePositionSequence[0].ImagePositionPatient[2]) for f in ds.PerFrameFunctionalGroupsSequence]
    assert img.meta.spacing == pytest.approx((abs(z[1] - z[0]), *map(float, pm.PixelSpacing)))


def test_colour_and_multiframe_colour_dicom():
    rgb = read_image(_testdata("SC_rgb.dcm"))
    assert rgb.meta.layout == "HWC" and rgb.array.dtype == np.uint8
    np.testing.assert_array_equal(rgb.array, pydicom.dcmread(_testdata("SC_rgb.dcm")).pixel_array)
    multi = read_image(_testdata("SC_rgb_2frame.dcm"))
    assert multi.meta.layout == "ZHWC" and multi.array.shape == (2, 100, 100, 3)


def test_monochrome1_is_inverted_for_gray(tmp_path):
    ds = pydicom.dcmread(_testdata("MR_small.dcm"))
    ds.PhotometricInterpretation = "MONOCHROME1"
    ds.save_as(tmp_path / "m1.dcm")
    stored = ds.pixel_array.astype(np.float64)
    gray = read_gray(tmp_path / "m1.dcm")
    expected = 255 - np.rint((stored - stored.min()) * 255 / (stored.max() - stored.min()))
    np.testing.assert_array_equal(gray, expected.astype(np.uint8))


@pytest.mark.data
def test_totalsegmentator_series(shared_data):
    folder = shared_data / "ct" / "totalsegmentator-example" / "dicom"
    img = read_image(folder)
    assert img.meta.format == "dicom-series" and img.meta.modality == "CT"
    assert img.array.shape == (20, 512, 512) and img.meta.layout == "ZHW"
    headers = [pydicom.dcmread(p) for p in sorted(folder.iterdir())]
    z = sorted(float(h.ImagePositionPatient[2]) for h in headers)  # axial: normal is +z
    assert [p[2] for p in img.meta.extra["positions"]] == pytest.approx(z)
    assert img.meta.spacing == pytest.approx((z[1] - z[0], *map(float, headers[0].PixelSpacing)))
    # HU against pydicom for the lowest slice: stored * slope + intercept
    low = min(headers, key=lambda h: float(h.ImagePositionPatient[2]))
    hu = low.pixel_array * float(low.RescaleSlope) + float(low.RescaleIntercept)
    np.testing.assert_array_equal(img.array[0], hu.astype(np.float32))
    # anatomy sanity: air outside the body, soft tissue at the centre
    assert img.array[:, :20, :20].mean() < -900
    centre = np.median(img.array[:, 200:312, 200:312])
    assert -200 < centre < 200
    same = read_dicom_series(folder)
    np.testing.assert_array_equal(same.array, img.array)


def test_series_sorted_by_position_not_name(tmp_path):
    src = pydicom.dcmread(_testdata("CT_small.dcm"))
    zs = [10.0, -5.0, 0.0]
    for i, z in enumerate(zs):
        ds = src.copy()
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [0, 0, z]
        ds.InstanceNumber = i + 1
        ds.SOPInstanceUID = pydicom.uid.generate_uid()
        arr = np.full((128, 128), i, np.int16)
        ds.PixelData = arr.tobytes()
        ds.save_as(tmp_path / f"s{i}.dcm")
    (tmp_path / "README.txt").write_text("not dicom")
    img = read_image(tmp_path)
    slope, inter = float(src.RescaleSlope), float(src.RescaleIntercept)
    order = np.argsort(zs)
    np.testing.assert_array_equal(img.array[:, 0, 0], order * slope + inter)
    assert img.meta.spacing[0] == pytest.approx(7.5) and img.meta.extra["uniform_spacing"] is False  # gaps 5, 10


def test_dicom_write_round_trip_keeps_hu(tmp_path):
    src = read_image(_testdata("CT_small.dcm"))
    denoised = src.array + 0.5 * np.float32(np.sign(src.array))  # non-integer HU need a new rescale
    for arr in (src.array, denoised, src.array - 1000):
        write_image(tmp_path / "d.dcm", arr, src.meta)
        back = read_image(tmp_path / "d.dcm")
        ds = pydicom.dcmread(tmp_path / "d.dcm")
        ref = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
        np.testing.assert_allclose(ref, arr, atol=max(float(ds.RescaleSlope), 1e-6))
        np.testing.assert_allclose(back.array, arr, atol=max(float(ds.RescaleSlope), 1e-6))
        assert ds.SOPInstanceUID != src.meta.dicom.SOPInstanceUID
        assert ds.PatientName == src.meta.dicom.PatientName and ds.Modality == "CT"
        assert "DERIVED" in ds.ImageType
    # no header: a Secondary Capture
    write_image(tmp_path / "sc.dcm", np.arange(12, dtype=np.uint16).reshape(3, 4) * 1000,
                ImageMeta(spacing=(0.5, 0.25)))
    ds = pydicom.dcmread(tmp_path / "sc.dcm")
    assert ds.SOPClassUID == pydicom.uid.SecondaryCaptureImageStorage
    np.testing.assert_array_equal(ds.pixel_array, np.arange(12).reshape(3, 4) * 1000)
    assert read_image(tmp_path / "sc.dcm").meta.spacing == (0.5, 0.25)


def test_nifti_matches_nibabel_and_round_trips(tmp_path):
    rng = np.random.default_rng(0)
    data = rng.normal(size=(7, 5, 3)).astype(np.float32)  # (x, y, z)
    affine = np.array([[0, 0, -2.5, 10], [0.8, 0, 0, -20], [0, 0.7, 0, 5], [0, 0, 0, 1]], float)
    nib.save(nib.Nifti1Image(data, affine), tmp_path / "a.nii.gz")
    img = read_image(tmp_path / "a.nii.gz")
    assert img.array.shape == (3, 5, 7) and img.meta.layout == "ZHW"
    np.testing.assert_array_equal(img.array, data.transpose(2, 1, 0))
    ref = nib.load(tmp_path / "a.nii.gz")
    np.testing.assert_allclose(img.meta.affine, ref.affine)
    assert img.meta.spacing == pytest.approx(tuple(reversed(ref.header.get_zooms())))
    assert img.meta.extra["axcodes"] == nib.aff2axcodes(affine)
    write_image(tmp_path / "b.nii", img.array * 2, img.meta)
    out = nib.load(tmp_path / "b.nii")
    np.testing.assert_allclose(out.affine, affine, atol=1e-5)
    np.testing.assert_array_equal(np.asanyarray(out.dataobj), data * 2)
    assert out.header.get_zooms() == pytest.approx(ref.header.get_zooms())
    # from spacing only
    write_image(tmp_path / "c.nii.gz", img.array, ImageMeta(spacing=(3.0, 2.0, 1.0)))
    assert nib.load(tmp_path / "c.nii.gz").header.get_zooms() == pytest.approx((1.0, 2.0, 3.0))


def test_nifti_scaled_int_and_trailing_singleton(tmp_path):
    data = np.arange(24, dtype=np.int16).reshape(2, 3, 4, 1)
    img = nib.Nifti1Image(data, np.eye(4))
    img.header.set_slope_inter(2.0, -10.0)
    nib.save(img, tmp_path / "s.nii")
    out = read_image(tmp_path / "s.nii")
    np.testing.assert_allclose(out.array, (data[..., 0] * 2.0 - 10.0).transpose(2, 1, 0))
    assert out.meta.original_dtype == "int16"


@pytest.mark.data
def test_real_nifti(shared_data):
    path = shared_data / "ct" / "totalsegmentator-example" / "example_ct.nii.gz"
    img = read_image(path)
    ref = nib.load(path)
    assert img.array.shape == tuple(reversed(ref.shape))
    np.testing.assert_allclose(img.meta.affine, ref.affine)
    assert -1100 < np.percentile(img.array, 1) < -900  # air, in HU


def test_npy_round_trip_and_layouts(tmp_path):
    for shape, layout in [((6, 7), "HW"), ((6, 7, 3), "HWC"), ((4, 6, 7), "ZHW")]:
        arr = np.arange(np.prod(shape), dtype=np.float32).reshape(shape)
        write_image(tmp_path / "a.npy", arr)
        img = read_image(tmp_path / "a.npy")
        assert img.meta.layout == layout
        np.testing.assert_array_equal(img.array, np.load(tmp_path / "a.npy"))


def test_windows():
    assert WINDOWS["soft_tissue"] == (40.0, 400.0)
    assert WINDOWS["lung"] == (-600.0, 1500.0) and WINDOWS["bone"] == (400.0, 1800.0)
    hu = np.array([-1000.0, -160.0, 40.0, 240.0, 3000.0])
    np.testing.assert_allclose(apply_window(hu, "soft_tissue"), [0, 0, 0.5, 1, 1])
    np.testing.assert_allclose(apply_window(hu, (0, 2000)), np.clip((hu + 1000) / 2000, 0, 1), atol=1e-7)
    lung = apply_window(np.array([-1350.0, -600.0, 150.0]), "lung")
    np.testing.assert_allclose(lung, [0, 0.5, 1])
    assert apply_window(hu, "bone").dtype == np.float32
    with pytest.raises(ValueError, match="unknown CT window"):
        apply_window(hu, "liverish")
    with pytest.raises(ValueError, match="width must be positive"):
        apply_window(hu, (0, 0))


def test_series_copy_of_shared_data_with_junk(shared_data, tmp_path):
    src = shared_data / "ct" / "totalsegmentator-example" / "dicom"
    files = sorted(src.iterdir())[:3]
    for f in files:
        shutil.copy(f, tmp_path / f.name)
    (tmp_path / "notes.txt").write_text("hello")
    img = read_image(tmp_path)
    assert img.array.shape == (3, 512, 512)


def test_dicom_without_preamble_is_sniffed(tmp_path):
    ds = pydicom.dcmread(_testdata("CT_small.dcm"))
    raw = tmp_path / "1.2.840.113619"  # named by UID: no known ending
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset

    buf = DicomBytesIO()
    buf.is_little_endian, buf.is_implicit_VR = True, False
    write_dataset(buf, ds)  # the dataset alone: no preamble, no DICM, no file meta group
    raw.write_bytes(buf.getvalue())
    assert raw.read_bytes()[:2] == b"\x08\x00"
    img = read_image(raw)
    np.testing.assert_array_equal(img.array, read_image(_testdata("CT_small.dcm")).array)
