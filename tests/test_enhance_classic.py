"""The FROC table's classical enhancement arms (stand-ins for AFDA and MedGA, seed paper 002)."""

from __future__ import annotations

import numpy as np
import pytest

from medattn.enhance.classic import CLASSIC_ENHANCERS, clahe, equalize_histogram, unsharp_mask
from medattn.errors import ConfigError


def _low_contrast(h: int = 48, w: int = 64) -> np.ndarray:
    """A dim, low-contrast image: a brighter disk on a gentle gradient, values 90..130."""
    yy, xx = np.mgrid[:h, :w]
    disk = ((yy - h / 2) ** 2 + (xx - w / 3) ** 2 < (h / 5) ** 2) * 25.0
    return np.rint(90 + 15 * xx / w + disk).astype(np.uint8)


@pytest.mark.parametrize("name", sorted(CLASSIC_ENHANCERS))
def test_enhancers_keep_shape_and_type(name: str) -> None:
    img = _low_contrast()
    out = CLASSIC_ENHANCERS[name](img)
    assert out.shape == img.shape and out.dtype == np.uint8
    assert not np.array_equal(out, img)
    with pytest.raises(ConfigError, match="gray uint8"):
        CLASSIC_ENHANCERS[name](np.zeros((4, 4, 3), np.uint8))


def test_histogram_equalisation_spreads_to_the_full_range_in_order() -> None:
    img = _low_contrast()
    out = equalize_histogram(img)
    assert int(out.max()) - int(out.min()) > 4 * (int(img.max()) - int(img.min())) and out.max() == 255
    # a monotone map of the intensities: brighter input pixels never get darker outputs
    order = np.argsort(img.ravel(), kind="stable")
    assert (np.diff(out.ravel()[order].astype(int)) >= 0).all()


def test_clahe_raises_local_contrast() -> None:
    img = _low_contrast()
    out = clahe(img)
    assert out.std() > 1.5 * img.std()


def test_unsharp_mask_overshoots_edges_and_keeps_flat_regions() -> None:
    step = np.full((32, 32), 100, np.uint8)
    step[:, 16:] = 150
    out = unsharp_mask(step).astype(int)
    assert out[:, 15].max() < 100 and out[:, 16].min() > 150  # darker / brighter beside the edge
    assert (out[:, :6] == 100).all() and (out[:, -6:] == 150).all()  # far from it: unchanged
    flat = np.full((16, 16), 77, np.uint8)
    assert np.array_equal(unsharp_mask(flat), flat)


def test_make_arms_builds_the_classic_arms_without_models() -> None:
    from medattn.enhance.detection import CLASSIC_ARMS, make_arms

    rgb = np.stack([np.repeat(_low_contrast(32, 32)[..., None], 3, axis=2)] * 2)
    arms = make_arms(rgb, None, None, ["gray", *CLASSIC_ARMS], progress=False)
    for name in CLASSIC_ARMS:
        a = arms[name]
        assert a.shape == rgb.shape and a.dtype == np.uint8
        assert np.array_equal(a[0, ..., 0], CLASSIC_ENHANCERS[name](arms["gray"][0, ..., 0]))
        assert np.array_equal(a[..., 0], a[..., 2])  # gray on three channels
