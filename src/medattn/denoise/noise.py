"""Measuring CT noise: standard deviation and noise power spectrum (NPS) of noise-only images.

The noise of a low-dose scan is ``low - normal`` of the same slice (the AAPM/Mayo quarter-dose
scans were made by inserting noise into the projections of the normal-dose scan, so the
difference is the inserted noise). Its *level* is the standard deviation in soft tissue; its
*texture* is the noise power spectrum, the variance per spatial frequency
(ICRU Report 87; Solomon et al., Med. Phys. 2012):

``NPS(fx, fy) = dx dy / (Nx Ny) * < |DFT(roi - mean(roi))|^2 >`` over square ROIs,

in HU^2 mm^2, radially averaged into rings of width ``1 / (N dx)``. Its integral over the
frequency plane is the variance, so two spectra of one noise level differ only in texture:
a smooth kernel moves the power to low frequencies (coarse grain), a sharp one to high.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> noise = rng.normal(0, 10, (256, 256))
>>> nps = noise_power_spectrum([noise], [np.ones((256, 256), bool)], pixel_mm=0.5, roi=64)
>>> bool(abs(nps.std_hu - 10) < 0.5), bool(abs(nps.variance_from_nps() / 100 - 1) < 0.05)
(True, True)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage


@dataclass
class NoiseSpectrum:
    """A radially averaged NPS (``freq`` in cycles/mm, ``nps`` in HU^2 mm^2) with the noise SD."""

    freq: np.ndarray
    nps: np.ndarray
    std_hu: float
    n_rois: int
    pixel_mm: float
    roi: int
    nps2d: np.ndarray

    @property
    def mean_frequency(self) -> float:
        """Power-weighted mean radial frequency (cycles/mm): one number for the texture."""
        w = self.nps * self.freq  # ring area grows with f
        return float((self.freq * w).sum() / max(w.sum(), 1e-30))

    @property
    def peak_frequency(self) -> float:
        """Frequency of the NPS maximum (cycles/mm)."""
        return float(self.freq[int(np.argmax(self.nps))])

    def normalised(self) -> np.ndarray:
        """The NPS divided by the variance: its shape only (texture without the level)."""
        return self.nps / max(self.variance_from_nps(), 1e-30)

    def variance_from_nps(self) -> float:
        """The 2-D NPS integrated over the frequency plane (equals the ROI variance)."""
        df = 1.0 / (self.roi * self.pixel_mm)
        return float(self.nps2d.sum() * df * df)

    def to_dict(self) -> dict[str, object]:
        return {"freq_per_mm": [round(float(f), 5) for f in self.freq],
                "nps_hu2_mm2": [round(float(v), 4) for v in self.nps],
                "std_hu": round(self.std_hu, 3), "mean_frequency_per_mm": round(self.mean_frequency, 4),
                "peak_frequency_per_mm": round(self.peak_frequency, 4), "n_rois": self.n_rois,
                "pixel_mm": self.pixel_mm, "roi": self.roi}


def soft_tissue_mask(normal_hu: np.ndarray, lo: float = -150.0, hi: float = 250.0, erode_px: int = 4) -> np.ndarray:
    """Pixels of soft tissue (``lo``..``hi`` HU after a median filter) away from edges by ``erode_px``."""
    smooth = ndimage.median_filter(np.asarray(normal_hu, dtype=np.float32), size=5)
    mask = (smooth > lo) & (smooth < hi)
    if erode_px > 0:
        mask = ndimage.binary_erosion(mask, iterations=erode_px)
    return mask


def roi_corners(mask: np.ndarray, roi: int, stride: int | None = None, min_fraction: float = 0.9
                ) -> list[tuple[int, int]]:
    """Top-left corners of ``roi`` x ``roi`` squares on a grid (``stride``) that lie mostly inside ``mask``."""
    stride = stride or roi // 2
    h, w = mask.shape
    out = []
    for y in range(0, h - roi + 1, stride):
        for x in range(0, w - roi + 1, stride):
            if mask[y : y + roi, x : x + roi].mean() >= min_fraction:
                out.append((y, x))
    return out


def noise_power_spectrum(noise: Sequence[np.ndarray], masks: Sequence[np.ndarray], *, pixel_mm: float,
                         roi: int = 64, min_fraction: float = 0.9, detrend: bool = True) -> NoiseSpectrum:
    """NPS and SD of noise-only images, from ``roi``-pixel squares that lie inside each image's mask.

    ``noise`` are difference images (low-dose minus normal-dose, or simulated noise); ``masks``
    the regions to sample (e.g. :func:`soft_tissue_mask` of the normal-dose slice). Each ROI has
    its mean (``detrend``: its best-fit plane) removed. ``std_hu`` is the SD of the noise pixels
    over all ROIs.
    """
    if pixel_mm <= 0:
        raise ValueError(f"pixel size must be positive, got {pixel_mm}")
    if len(noise) != len(masks):
        raise ValueError(f"{len(noise)} noise images but {len(masks)} masks")
    yy, xx = np.mgrid[0:roi, 0:roi].astype(np.float64)
    design = np.stack([np.ones(roi * roi), yy.ravel(), xx.ravel()], axis=1)
    acc = np.zeros((roi, roi))
    values = []
    n = 0
    for img, mask in zip(noise, masks, strict=True):
        img = np.asarray(img, dtype=np.float64)
        if img.shape != mask.shape:
            raise ValueError(f"noise image {img.shape} and mask {mask.shape} differ in shape")
        for y, x in roi_corners(mask, roi, min_fraction=min_fraction):
            patch = img[y : y + roi, x : x + roi]
            if detrend:
                coef, *_ = np.linalg.lstsq(design, patch.ravel(), rcond=None)
                patch = patch - (design @ coef).reshape(roi, roi)
            else:
                patch = patch - patch.mean()
            acc += np.abs(np.fft.fft2(patch)) ** 2
            values.append(patch.ravel())
            n += 1
    if n == 0:
        raise ValueError(f"no {roi}x{roi} ROI lies inside the masks; use a smaller roi")
    nps2d = np.fft.fftshift(acc / n) * pixel_mm * pixel_mm / (roi * roi)
    f = np.fft.fftshift(np.fft.fftfreq(roi, d=pixel_mm))
    fr = np.hypot(*np.meshgrid(f, f, indexing="ij"))
    df = 1.0 / (roi * pixel_mm)
    bins = np.rint(fr / df).astype(int)
    n_bins = roi // 2 + 1
    keep = bins < n_bins
    sums = np.bincount(bins[keep], weights=nps2d[keep], minlength=n_bins)
    counts = np.bincount(bins[keep], minlength=n_bins)
    radial = sums / np.maximum(counts, 1)
    std = float(np.concatenate(values).std())
    return NoiseSpectrum(freq=np.arange(n_bins) * df, nps=radial, std_hu=std, n_rois=n, pixel_mm=float(pixel_mm),
                         roi=roi, nps2d=nps2d)


def nps_shape_distance(a: NoiseSpectrum, b: NoiseSpectrum) -> float:
    """Relative L2 distance between two NPS shapes (each normalised to unit variance), on ``a``'s rings."""
    nb = np.interp(a.freq, b.freq, b.normalised())
    na = a.normalised()
    return float(np.sqrt(((na - nb) ** 2 * a.freq).sum() / max((na**2 * a.freq).sum(), 1e-30)))
