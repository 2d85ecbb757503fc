"""PNG/JPEG/BMP/TIFF reading and writing, sniffing, gray/mask/RGB views (Pillow/tifffile/OpenCV as references)."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from PIL import Image

from medattn.errors import MedattnIOError
from medattn.io import (
    ImageMeta,
    read_gray,
    read_image,
    read_mask,
    read_rgb,
    rgb_to_gray,
    to_uint8,
    write_image,
)

RNG = np.random.default_rng(1234)


def _rgb(h: int = 48, w: int = 64) -> np.ndarray:
    return RNG.integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.mark.parametrize("ext", ["png", "bmp", "tif"])
@pytest.mark.parametrize("kind", ["gray", "rgb", "rgba"])
def test_lossless_round_trip(tmp_path, ext, kind):
    arr = {"gray": RNG.integers(0, 256, (48, 64), dtype=np.uint8), "rgb": _rgb(),
           "rgba": RNG.integers(0, 256, (48, 64, 4), dtype=np.uint8)}[kind]
    path = tmp_path / f"x.{ext}"
    if ext == "bmp" and kind == "rgba":
        with pytest.raises(MedattnIOError, match="BMP cannot store an alpha channel"):
            write_image(path, arr)
        return
    write_image(path, arr)
    img = read_image(path)
    np.testing.assert_array_equal(img.array, arr)
    assert img.array.flags.writeable
    assert img.meta.layout == ("HW" if kind == "gray" else "HWC")
    assert img.meta.original_dtype == "uint8"
    assert img.meta.source == str(path)
    # Pillow reads back the same pixels (independent decoder for PNG/BMP, tifffile for TIFF)
    ref = tifffile.imread(path) if ext == "tif" else np.asarray(Image.open(path))
    np.testing.assert_array_equal(ref, arr)


def test_png_16bit_and_bool(tmp_path):
    a16 = RNG.integers(0, 65536, (32, 40), dtype=np.uint16)
    write_image(tmp_path / "a.png", a16)
    img = read_image(tmp_path / "a.png")
    assert img.array.dtype == np.uint16
    np.testing.assert_array_equal(img.array, a16)
    mask = RNG.random((32, 40)) > 0.5
    write_image(tmp_path / "m.png", mask)
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "m.png")), mask.astype(np.uint8) * 255)
    np.testing.assert_array_equal(read_mask(tmp_path / "m.png"), mask)


def test_jpeg_matches_pillow(tmp_path):
    arr = _rgb()
    write_image(tmp_path / "a.jpg", arr)
    img = read_image(tmp_path / "a.jpg")
    assert img.meta.format == "jpeg" and img.array.shape == (48, 64, 3)
    np.testing.assert_array_equal(img.array, np.asarray(Image.open(tmp_path / "a.jpg").convert("RGB")))
    assert np.abs(img.array.astype(int) - arr).mean() < 12  # quality 95, 4:4:4


def test_palette_png_becomes_rgb(tmp_path):
    arr = _rgb(16, 16)
    Image.fromarray(arr).convert("P", palette=Image.Palette.ADAPTIVE, colors=8).save(tmp_path / "p.png")
    img = read_image(tmp_path / "p.png")
    ref = np.asarray(Image.open(tmp_path / "p.png").convert("RGB"))
    np.testing.assert_array_equal(img.array, ref)


def test_png_named_jpg_is_read_by_content(tmp_path):
    arr = _rgb()
    Image.fromarray(arr).save(tmp_path / "really_png.jpg", format="PNG")
    img = read_image(tmp_path / "really_png.jpg")
    assert img.meta.format == "png"
    np.testing.assert_array_equal(img.array, arr)


def test_float_tiff_and_stack_with_spacing(tmp_path):
    vol = RNG.random((3, 20, 24)).astype(np.float32)
    write_image(tmp_path / "v.tif", vol, ImageMeta(spacing=(2.5, 0.7, 0.6), layout="ZHW"))
    img = read_image(tmp_path / "v.tif")
    assert img.meta.layout == "ZHW" and img.array.dtype == np.float32
    np.testing.assert_array_equal(img.array, vol)
    np.testing.assert_allclose(img.meta.spacing, (2.5, 0.7, 0.6))
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "v.tif"), vol)


def test_imagej_tiff_spacing(tmp_path):
    vol = RNG.integers(0, 4000, (4, 16, 16), dtype=np.uint16)
    tifffile.imwrite(tmp_path / "ij.tif", vol, imagej=True, resolution=(1 / 0.5, 1 / 0.25),
                     metadata={"spacing": 2.0, "unit": "um", "axes": "ZYX"})
    img = read_image(tmp_path / "ij.tif")
    np.testing.assert_array_equal(img.array, vol)
    np.testing.assert_allclose(img.meta.spacing, (2e-3, 0.25e-3, 0.5e-3))


def test_planar_tiff_is_channels_last(tmp_path):
    arr = _rgb(10, 12)
    tifffile.imwrite(tmp_path / "p.tif", np.moveaxis(arr, -1, 0), photometric="rgb", planarconfig="separate")
    img = read_image(tmp_path / "p.tif")
    assert img.meta.layout == "HWC"
    np.testing.assert_array_equal(img.array, arr)


def test_rgb_to_gray_weights():
    rgb = _rgb()
    r, g, b = (rgb[..., i].astype(np.float64) for i in range(3))
    exact = 0.299 * r + 0.587 * g + 0.114 * b
    # OpenCV rounds; libpng truncates (its weights are themselves truncated to 15 bits)
    assert np.abs(rgb_to_gray(rgb, "opencv") - exact).max() <= 0.51
    diff = rgb_to_gray(rgb, "libpng") - exact
    assert diff.max() <= 0.01 and diff.min() >= -1.01
    # pure colours: libpng truncates (149.685 -> 149), OpenCV rounds (-> 150)
    green = np.zeros((1, 1, 3), np.uint8)
    green[..., 1] = 255
    assert rgb_to_gray(green, "libpng")[0, 0] == 149 and rgb_to_gray(green, "opencv")[0, 0] == 150


@pytest.mark.parametrize("ext", ["png", "jpg", "bmp", "tif"])
def test_read_gray_matches_opencv(tmp_path, ext):
    cv2 = pytest.importorskip("cv2")
    arr = _rgb()
    path = tmp_path / f"c.{ext}"
    Image.fromarray(arr).save(path)
    np.testing.assert_array_equal(read_gray(path), cv2.imread(str(path), cv2.IMREAD_GRAYSCALE))
    np.testing.assert_array_equal(read_rgb(path), cv2.imread(str(path), cv2.IMREAD_COLOR)[..., ::-1])


def test_read_gray_16bit_matches_opencv(tmp_path):
    cv2 = pytest.importorskip("cv2")
    a16 = RNG.integers(0, 65536, (16, 16), dtype=np.uint16)
    Image.fromarray(a16).save(tmp_path / "a.png")
    np.testing.assert_array_equal(read_gray(tmp_path / "a.png"), cv2.imread(str(tmp_path / "a.png"), 0))


def test_to_uint8_rules():
    np.testing.assert_array_equal(to_uint8(np.array([0.0, 0.5, 1.0])), [0, 128, 255])
    np.testing.assert_array_equal(to_uint8(np.array([-1000.0, 0.0, 1000.0])), [0, 128, 255])
    np.testing.assert_array_equal(to_uint8(np.array([0, 4095], np.uint16), full_range=4095), [0, 255])
    np.testing.assert_array_equal(to_uint8(np.array([True, False])), [255, 0])
    np.testing.assert_array_equal(to_uint8(np.array([256, 65535], np.uint16)), [1, 255])


def test_read_rgb_gray_and_alpha(tmp_path):
    gray = RNG.integers(0, 256, (8, 9), dtype=np.uint8)
    write_image(tmp_path / "g.png", gray)
    rgb = read_rgb(tmp_path / "g.png")
    assert rgb.shape == (8, 9, 3) and rgb.dtype == np.uint8
    np.testing.assert_array_equal(rgb, np.stack([gray] * 3, -1))
    rgba = RNG.integers(0, 256, (8, 9, 4), dtype=np.uint8)
    write_image(tmp_path / "a.png", rgba)
    np.testing.assert_array_equal(read_rgb(tmp_path / "a.png"), rgba[..., :3])


def test_read_mask_threshold(tmp_path):
    gray = np.array([[0, 127, 128, 255]], np.uint8)
    write_image(tmp_path / "m.png", gray)
    np.testing.assert_array_equal(read_mask(tmp_path / "m.png"), [[False, False, True, True]])
    # an anti-aliased RGB mask: gray value decides
    rgb = np.stack([gray] * 3, -1)
    write_image(tmp_path / "m3.png", rgb)
    assert read_mask(tmp_path / "m3.png").dtype == np.bool_
    np.testing.assert_array_equal(read_mask(tmp_path / "m3.png"), [[False, False, True, True]])


@pytest.mark.data
def test_real_masks_and_images_match_opencv(shared_data):
    cv2 = pytest.importorskip("cv2")
    kv = sorted((shared_data / "kvasir-seg" / "images").glob("*.jpg"))[:3]
    kvm = [shared_data / "kvasir-seg" / "masks" / p.name for p in kv]
    cvc = sorted((shared_data / "cvc-clinicdb").rglob("*.png"))[:2]
    for path in [*kv, *kvm, *cvc]:
        ref = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        np.testing.assert_array_equal(read_gray(path), ref, err_msg=str(path))
        np.testing.assert_array_equal(read_mask(path), ref > 127, err_msg=str(path))
    img = read_image(kv[0])
    np.testing.assert_array_equal(img.array, cv2.imread(str(kv[0]))[..., ::-1])


def test_write_rejects_what_format_cannot_hold(tmp_path):
    with pytest.raises(MedattnIOError, match=r"x\.png: PNG stores uint8 or uint16 \(gray\) pixels; got float32"):
        write_image(tmp_path / "x.png", np.zeros((4, 4), np.float32))
    with pytest.raises(MedattnIOError, match="JPEG cannot store an alpha"):
        write_image(tmp_path / "x.jpg", np.zeros((4, 4, 4), np.uint8))
    with pytest.raises(MedattnIOError, match="cannot write this file type"):
        write_image(tmp_path / "x.xyz", np.zeros((4, 4), np.uint8))
    assert list(tmp_path.iterdir()) == []  # nothing half-written left behind
