"""CT display windows: map Hounsfield units to [0, 1] for viewing or as network input.

A window ``(center, width)`` maps ``center - width/2`` to 0 and ``center + width/2``
to 1, clipping outside. Presets (HU), as commonly used in radiology:

* ``soft_tissue``: center 40, width 400 (abdomen/mediastinum soft tissue);
* ``lung``: center -600, width 1500;
* ``bone``: center 400, width 1800;
* ``brain``: center 40, width 80.
"""

from __future__ import annotations

import numpy as np

WINDOWS: dict[str, tuple[float, float]] = {
    "soft_tissue": (40.0, 400.0),
    "lung": (-600.0, 1500.0),
    "bone": (400.0, 1800.0),
    "brain": (40.0, 80.0),
}
"""Preset windows as ``name -> (center, width)`` in HU."""


def window_bounds(window: str | tuple[float, float]) -> tuple[float, float]:
    """``(low, high)`` HU of a preset name or a ``(center, width)`` pair."""
    if isinstance(window, str):
        key = window.strip().lower().replace("-", "_").replace(" ", "_")
        if key == "soft":
            key = "soft_tissue"
        if key not in WINDOWS:
            raise ValueError(f"unknown CT window {window!r}; presets: {', '.join(WINDOWS)} or (center, width)")
        center, width = WINDOWS[key]
    else:
        try:
            center, width = (float(v) for v in window)
        except (TypeError, ValueError):
            raise ValueError(f"a CT window is a preset name or (center, width), got {window!r}") from None
    if not width > 0:
        raise ValueError(f"window width must be positive, got {width}")
    return center - width / 2.0, center + width / 2.0


def apply_window(hu: np.ndarray, window: str | tuple[float, float] = "soft_tissue") -> np.ndarray:
    """Map HU to float32 in [0, 1] through a window (linear inside, clipped outside).

    >>> apply_window(np.array([-1000.0, 40.0, 1000.0]), "soft_tissue").tolist()
    [0.0, 0.5, 1.0]
    """
    low, high = window_bounds(window)
    out = (np.asarray(hu, dtype=np.float32) - np.float32(low)) * np.float32(1.0 / (high - low))
    return np.clip(out, 0.0, 1.0, out=out)
