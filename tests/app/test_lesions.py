"""Lesion measurement (medattn.inference.lesions) against hand-made masks, brute force and scipy/scikit-image."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy import ndimage

from medattn.inference.lesions import MinSize, feret_diameter, find_lesions, min_size_from_card


def _brute_feret(mask: np.ndarray, spacing=(1.0, 1.0)) -> float:
    """Longest distance between any two corners of any two pixels (no hull shortcut)."""
    r, c = np.nonzero(mask)
    pts = np.array([(y + a, x + b) for y, x in zip(r, c, strict=True) for a, b in itertools.product((0, 1), (0, 1))], float)
    pts *= np.asarray(spacing)
    return max(math.dist(p, q) for p, q in itertools.combinations(pts, 2))


def test_feret_of_a_rectangle_is_its_diagonal_with_anisotropic_pixels():
    m = np.zeros((20, 30), bool)
    m[3:8, 4:16] = True  # 5 rows x 12 columns
    assert feret_diameter(m) == pytest.approx(13.0)
    assert feret_diameter(m, (2.0, 0.5)) == pytest.approx(math.hypot(5 * 2.0, 12 * 0.5))


@pytest.mark.parametrize("seed", range(4))
def test_feret_matches_brute_force_on_random_shapes(seed):
    rng = np.random.default_rng(seed)
    m = ndimage.binary_opening(rng.random((18, 22)) > 0.45)
    m = ndimage.label(m)[0] == 1
    assert m.any()
    assert feret_diameter(m, (0.7, 1.3)) == pytest.approx(_brute_feret(m, (0.7, 1.3)))


def test_feret_of_a_disk_agrees_with_scikit_image():
    from skimage.draw import disk
    from skimage.measure import regionprops

    m = np.zeros((80, 80), bool)
    m[disk((40, 40), 20)] = True
    ref = regionprops(m.astype(np.uint8))[0].feret_diameter_max  # pixel centres' hull contour: ~2 px less
    assert feret_diameter(m) == pytest.approx(ref, abs=2.0)
    assert 40.0 <= feret_diameter(m) <= 42.0


def _ball(shape, centre, radius):
    zz, yy, xx = np.indices(shape)
    return (zz - centre[0]) ** 2 + (yy - centre[1]) ** 2 + (xx - centre[2]) ** 2 <= radius**2


def test_a_structure_across_slices_is_one_lesion_with_its_volume():
    prob = np.zeros((12, 40, 40), np.float32)
    big = _ball(prob.shape, (5, 15, 15), 4)
    small = _ball(prob.shape, (6, 30, 30), 2)
    prob[big] = 0.9
    prob[small] = 0.7
    labels, lesions = find_lesions(prob, 0.5, spacing=(2.5, 0.8, 0.8), min_size=MinSize(px=4))
    assert len(lesions) == 2  # the per-slice count would have been 9 + 5
    first, second = lesions
    assert [first["number"], second["number"]] == [1, 2]
    assert first["voxels"] == int(big.sum())
    assert first["volume_ml"] == pytest.approx(big.sum() * 2.5 * 0.8 * 0.8 / 1000, rel=1e-3)
    assert first["slices"] == [2, 10] and first["slice"] == 6  # 1-based slice numbers
    assert first["area_px"] == int(big[5].sum())
    assert first["area_mm2"] == pytest.approx(big[5].sum() * 0.64, rel=1e-3)
    assert first["longest_diameter_mm"] == pytest.approx(feret_diameter(big[5], (0.8, 0.8)), abs=0.01)
    assert first["mean_confidence"] == pytest.approx(0.9) and second["mean_confidence"] == pytest.approx(0.7)
    assert labels.dtype == np.uint16
    assert (labels == 1).sum() == big.sum() and (labels == 2).sum() == small.sum()
    assert set(np.unique(labels)) == {0, 1, 2}


def test_diagonal_neighbours_across_slices_join():
    prob = np.zeros((3, 5, 5), np.float32)
    prob[0, 1, 1] = prob[1, 2, 2] = prob[2, 3, 3] = 1.0
    _, lesions = find_lesions(prob, 0.5, min_size=MinSize(px=1))
    assert len(lesions) == 1 and lesions[0]["voxels"] == 3 and lesions[0]["slices"] == [1, 3]


def test_specks_below_the_minimum_size_are_not_lesions():
    prob = np.zeros((60, 60), np.float32)
    prob[5:15, 5:15] = 0.8  # 100 px = 25 mm2 at 0.5 mm
    prob[40:43, 40:43] = 0.8  # 9 px = 2.25 mm2
    prob[50, 50] = 0.8  # 1 px
    assert len(find_lesions(prob, 0.5, min_size=MinSize(px=1))[1]) == 3
    assert len(find_lesions(prob, 0.5, min_size=MinSize(px=4))[1]) == 2
    labels, kept = find_lesions(prob, 0.5, spacing=(0.5, 0.5), min_size=MinSize(px=1, mm2=5.0))
    assert [les["area_px"] for les in kept] == [100]
    assert labels[41, 41] == 0 and labels[50, 50] == 0 and labels[10, 10] == 1


def test_2d_records_match_scipy_and_have_no_volume_fields():
    rng = np.random.default_rng(3)
    prob = ndimage.gaussian_filter(rng.random((64, 64)), 2).astype(np.float32)
    prob = (prob - prob.min()) / (prob.max() - prob.min())
    labels, lesions = find_lesions(prob, 0.6, spacing=None, min_size=MinSize(px=1))
    ref, n = ndimage.label(prob > 0.6, structure=np.ones((3, 3)))
    assert len(lesions) == n
    assert sorted(les["area_px"] for les in lesions) == sorted(np.bincount(ref.ravel())[1:].tolist())
    for les in lesions:
        assert les["area_mm2"] is None and les["longest_diameter_mm"] is None
        assert not {"voxels", "volume_ml", "slice", "slices"} & les.keys()
        x0, y0, x1, y1 = les["bbox"]
        assert labels[y0:y1 + 1, x0:x1 + 1].max() >= les["number"]
        assert les["longest_diameter_px"] == pytest.approx(_brute_feret(labels == les["number"]), abs=0.01)
    areas = [les["area_px"] for les in lesions]
    assert areas == sorted(areas, reverse=True)


def test_volume_with_only_a_pixel_spacing_has_areas_but_no_volume():
    prob = np.zeros((3, 10, 10), np.float32)
    prob[:, 2:6, 2:6] = 1.0
    _, (les,) = find_lesions(prob, 0.5, spacing=(0.5, 0.5), min_size=MinSize(px=1))
    assert les["area_mm2"] == pytest.approx(4.0) and les["volume_ml"] is None


def test_min_size_from_the_card_or_the_default():
    assert min_size_from_card({"min_lesion_px": 30, "min_lesion_mm2": 2.5}, (512, 512)) == MinSize(30, 2.5)
    assert min_size_from_card({}, (1000, 1000)) == MinSize(100, None)
    assert min_size_from_card(None, (64, 64)) == MinSize(4, None)


def test_bad_input_names_the_problem():
    with pytest.raises(ValueError, match="2D or 3D"):
        find_lesions(np.zeros(5))
