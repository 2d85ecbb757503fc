"""benchmarks/small_lesions.py: size bins, their summary, and the pasted small polyp."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("small_lesions", REPO / "benchmarks" / "small_lesions.py")
sl = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(sl)


def test_bins_and_summary() -> None:
    assert [sl.size_bin(a) for a in (0.0, 0.009, 0.01, 0.049, 0.05, 1.0)] == [
        "< 1 %", "< 1 %", "1-5 %", "1-5 %", "> 5 %", "> 5 %"]
    rows = [{"bin": "< 1 %", "dice": 0.05}, {"bin": "< 1 %", "dice": 0.6}, {"bin": "> 5 %", "dice": 0.9}]
    s = sl.summarise(rows)
    assert s["< 1 %"] == {"n": 2, "mean_dice": pytest.approx(0.325), "missed": 1}
    assert s["1-5 %"] == {"n": 0, "mean_dice": None, "missed": 0}
    assert s["all"]["n"] == 3 and s["all"]["missed"] == 1


@pytest.mark.parametrize("diameter", [15, 40])
def test_pasted_polyp_has_the_requested_size_on_lit_mucosa(diameter: int) -> None:
    rng = np.random.default_rng(0)
    background = np.full((300, 400, 3), 150, np.uint8)
    background[:, :40] = 0  # a dark border the polyp must avoid
    bg_mask = np.zeros((300, 400), bool)
    bg_mask[100:200, 250:350] = True
    polyp = rng.integers(0, 255, (200, 200, 3), dtype=np.uint8)
    yy, xx = np.mgrid[:200, :200]
    polyp_mask = (yy - 100) ** 2 + (xx - 90) ** 2 < 50**2
    frame, mask = sl.paste_small_polyp(background, bg_mask, polyp, polyp_mask, 500, diameter)
    assert frame.shape == (500, 500, 3) and frame.dtype == np.uint8 and mask.shape == (500, 500)
    equivalent = 2 * np.sqrt(mask.sum() / np.pi)
    assert abs(equivalent - diameter) <= 0.15 * diameter + 1
    _, xs = np.nonzero(mask)
    assert xs.min() > 40 * 500 / 400  # not on the dark border
    big = np.zeros((500, 500), bool)
    big[int(100 * 500 / 300): int(200 * 500 / 300), int(250 * 1.25): int(350 * 1.25)] = True
    assert not (mask & big).any()  # away from the frame's own polyp
    assert not np.array_equal(frame[mask], np.full_like(frame[mask], 150))  # polyp pixels were pasted
