"""Augmentation pipelines of MONAI dictionary transforms, configured by name.

A pipeline is a list of names or dicts::

    build_transforms(["flip", {"name": "rotate", "range": 30, "prob": 0.5}, "color_jitter"], (352, 352))

Data are dicts with ``"image"`` (float (C, H, W) in [0, 1]) and, when labelled,
``"mask"`` (float (1, H, W) in {0, 1}). Geometric transforms draw one random
parameter set per sample and apply it to both keys, bilinear for the image and
nearest for the mask, with the same padding, so the pair stays aligned.
Intensity transforms touch the image only. Every training pipeline ends by
clamping the image to [0, 1] and returning plain ``torch.Tensor`` values.

Randomness comes from each transform's own ``RandomState``: call
``pipeline.set_random_state(seed)`` (or ``monai.utils.set_determinism(seed)`` before
building it) for reproducible augmentation; see :func:`medattn.data.worker_init_fn`
for DataLoader workers.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai import transforms as mt
from monai.transforms import MapTransform, RandomizableTransform

from medattn.errors import ConfigError

KEYS = ("image", "mask")


def _as_tensor(x: Any) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x.as_tensor() if hasattr(x, "as_tensor") else x
    return torch.as_tensor(np.asarray(x))


def _shift_hue(rgb: torch.Tensor, shift: float) -> torch.Tensor:
    """Rotate the HSV hue of an RGB (3, H, W) image in [0, 1] by ``shift`` turns."""
    r, g, b = rgb[0], rgb[1], rgb[2]
    maxc, _ = rgb.max(dim=0)
    minc, _ = rgb.min(dim=0)
    delta = maxc - minc
    safe = torch.where(delta > 0, delta, torch.ones_like(delta))
    hue = torch.where(
        maxc == r, ((g - b) / safe) % 6, torch.where(maxc == g, (b - r) / safe + 2, (r - g) / safe + 4)
    )
    hue = torch.where(delta > 0, hue / 6.0, torch.zeros_like(hue))
    hue = (hue + shift) % 1.0
    sat = torch.where(
        maxc > 0, delta / torch.where(maxc > 0, maxc, torch.ones_like(maxc)), torch.zeros_like(maxc)
    )
    # HSV -> RGB with the continuous formula f(n) = v - v s max(0, min(k, 4 - k, 1)), k = (n + 6h) mod 6
    out = []
    for n in (5.0, 3.0, 1.0):
        k = (n + hue * 6.0) % 6.0
        out.append(maxc - maxc * sat * torch.clamp(torch.minimum(k, 4.0 - k), 0.0, 1.0))
    return torch.stack(out)


class RandColorJitterd(RandomizableTransform, MapTransform):
    """Random brightness, contrast, saturation and hue (in that order), like torchvision's ColorJitter.

    Factors are drawn uniformly from ``[1 - b, 1 + b]`` (brightness, contrast, saturation)
    and the hue shift from ``[-h, h]`` turns of the colour wheel, applied in HSV space as
    torchvision does. Saturation and hue are skipped for one-channel images.
    """

    def __init__(
        self,
        keys: Sequence[Hashable] | Hashable = "image",
        brightness: float = 0.2,
        contrast: float = 0.2,
        saturation: float = 0.2,
        hue: float = 0.05,
        prob: float = 0.8,
        allow_missing_keys: bool = True,
    ) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        RandomizableTransform.__init__(self, prob)
        for name, value, top in (
            ("brightness", brightness, 1.0),
            ("contrast", contrast, 1.0),
            ("saturation", saturation, 1.0),
            ("hue", hue, 0.5),
        ):
            if not 0 <= value <= top:
                raise ConfigError(f"color_jitter: {name}={value} must lie in [0, {top}]")
        self.brightness, self.contrast, self.saturation, self.hue = brightness, contrast, saturation, hue
        self._factors = (1.0, 1.0, 1.0, 0.0)

    def randomize(self, data: Any = None) -> None:
        super().randomize(None)
        if not self._do_transform:
            return
        u = self.R.uniform
        self._factors = (
            u(1 - self.brightness, 1 + self.brightness),
            u(1 - self.contrast, 1 + self.contrast),
            u(1 - self.saturation, 1 + self.saturation),
            u(-self.hue, self.hue),
        )

    def _jitter(self, img: torch.Tensor) -> torch.Tensor:
        b, c, s, h = self._factors
        x = img * b
        if x.shape[0] == 3:
            gray = (0.299 * x[0] + 0.587 * x[1] + 0.114 * x[2]).unsqueeze(0)
        else:
            gray = x.mean(dim=0, keepdim=True)
        x = (x - gray.mean()) * c + gray.mean()
        if x.shape[0] == 3:
            gray = (0.299 * x[0] + 0.587 * x[1] + 0.114 * x[2]).unsqueeze(0)
            x = (x - gray) * s + gray
            if h != 0.0:
                x = _shift_hue(x.clamp(0.0, 1.0), h)
        return x.clamp(0.0, 1.0)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        self.randomize()
        if not self._do_transform:
            return d
        for key in self.key_iterator(d):
            d[key] = self._jitter(_as_tensor(d[key]).float())
        return d


class ClampIntensityd(MapTransform):
    """Clip values to ``[lo, hi]`` (noise and contrast changes may leave [0, 1])."""

    def __init__(
        self, keys: Sequence[Hashable] | Hashable = "image", lo: float = 0.0, hi: float = 1.0
    ) -> None:
        super().__init__(keys, allow_missing_keys=True)
        self.lo, self.hi = lo, hi

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = _as_tensor(d[key]).clamp(self.lo, self.hi)
        return d


class RandResizedCropd(RandomizableTransform, MapTransform):
    """Random crop of ``scale`` x the area and aspect ratio in ``ratio``, resized back to ``size``.

    Like torchvision's ``RandomResizedCrop``: the area fraction is uniform in ``scale``, the
    aspect ratio (w / h) log-uniform in ``ratio``; a crop that does not fit is clipped to the
    image. The image is resized bilinearly (antialiased when shrinking), the mask by
    ``nearest-exact``, from the same window, so the pair stays aligned.
    """

    def __init__(
        self,
        keys: Sequence[Hashable],
        size: tuple[int, int],
        scale: tuple[float, float] = (0.5, 1.0),
        ratio: tuple[float, float] = (0.75, 4.0 / 3.0),
        prob: float = 0.5,
    ) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys=True)
        RandomizableTransform.__init__(self, prob)
        if not 0 < scale[0] <= scale[1] <= 1:
            raise ConfigError(f"random_resized_crop: scale {list(scale)} must satisfy 0 < low <= high <= 1")
        if not 0 < ratio[0] <= ratio[1]:
            raise ConfigError(f"random_resized_crop: ratio {list(ratio)} must satisfy 0 < low <= high")
        self.size, self.scale, self.ratio = tuple(size), scale, ratio
        self._box = (0, 0, 0, 0)

    def randomize(self, data: Any = None) -> None:
        super().randomize(None)

    def _draw(self, h: int, w: int) -> tuple[int, int, int, int]:
        area = self.R.uniform(*self.scale) * h * w
        aspect = math.exp(self.R.uniform(math.log(self.ratio[0]), math.log(self.ratio[1])))
        ch = min(h, max(1, round(math.sqrt(area / aspect))))
        cw = min(w, max(1, round(math.sqrt(area * aspect))))
        top = int(self.R.randint(0, h - ch + 1))
        left = int(self.R.randint(0, w - cw + 1))
        return top, left, ch, cw

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        self.randomize()
        if not self._do_transform:
            return d
        first = _as_tensor(d[next(iter(self.key_iterator(d)))])
        top, left, ch, cw = self._draw(first.shape[-2], first.shape[-1])
        for key in self.key_iterator(d):
            x = _as_tensor(d[key]).float()[None, :, top: top + ch, left: left + cw]
            if key == "mask":
                x = torch.nn.functional.interpolate(x, size=self.size, mode="nearest-exact")
            else:
                shrink = self.size[0] < ch or self.size[1] < cw
                x = torch.nn.functional.interpolate(x, size=self.size, mode="bilinear", align_corners=False,
                                                    antialias=shrink)
            d[key] = x[0]
        return d


class RandJPEGd(RandomizableTransform, MapTransform):
    """JPEG compression artefacts: encode and decode the image at a quality drawn from ``quality``."""

    def __init__(self, keys: Sequence[Hashable] | Hashable = "image", quality: tuple[float, float] = (30, 90),
                 prob: float = 0.3) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys=True)
        RandomizableTransform.__init__(self, prob)
        if not 1 <= quality[0] <= quality[1] <= 100:
            raise ConfigError(f"jpeg: quality {list(quality)} must satisfy 1 <= low <= high <= 100")
        self.quality = quality
        self._q = int(quality[1])

    def randomize(self, data: Any = None) -> None:
        super().randomize(None)
        if self._do_transform:
            self._q = int(self.R.randint(int(self.quality[0]), int(self.quality[1]) + 1))

    @staticmethod
    def compress(img: torch.Tensor, quality: int) -> torch.Tensor:
        """(C, H, W) in [0, 1] through an 8-bit JPEG of ``quality`` (C = 1 or 3)."""
        import io

        from PIL import Image

        a = (img.clamp(0, 1) * 255.0).round().to(torch.uint8).permute(1, 2, 0).numpy()
        pil = Image.fromarray(a[..., 0] if a.shape[2] == 1 else a)
        buf = io.BytesIO()
        pil.save(buf, format="JPEG", quality=quality)
        out = np.asarray(Image.open(io.BytesIO(buf.getvalue())))
        out = out[..., None] if out.ndim == 2 else out
        return torch.from_numpy(out.transpose(2, 0, 1).copy()).float() / 255.0

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        self.randomize()
        if not self._do_transform:
            return d
        for key in self.key_iterator(d):
            d[key] = self.compress(_as_tensor(d[key]).float(), self._q)
        return d


class RandSpecularHighlightsd(RandomizableTransform, MapTransform):
    """Synthetic specular highlights: ``count`` small saturated white spots blended into the image.

    Endoscopic frames show light reflections that models take for polyps; each spot is an
    ellipse with a Gaussian fall-off, radius a fraction (``radius``) of the shorter image side,
    at a random position, blended as ``x + a (1 - x)`` with peak ``a`` = ``intensity``.
    The mask is unchanged (a highlight is never lesion).
    """

    def __init__(self, keys: Sequence[Hashable] | Hashable = "image", count: tuple[float, float] = (1, 4),
                 radius: tuple[float, float] = (0.01, 0.04), intensity: tuple[float, float] = (0.7, 1.0),
                 prob: float = 0.3) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys=True)
        RandomizableTransform.__init__(self, prob)
        if not 1 <= count[0] <= count[1]:
            raise ConfigError(f"specular: count {list(count)} must satisfy 1 <= low <= high")
        if not 0 < radius[0] <= radius[1] <= 0.5:
            raise ConfigError(f"specular: radius {list(radius)} must satisfy 0 < low <= high <= 0.5")
        if not 0 < intensity[0] <= intensity[1] <= 1:
            raise ConfigError(f"specular: intensity {list(intensity)} must satisfy 0 < low <= high <= 1")
        self.count, self.radius, self.intensity = count, radius, intensity

    def randomize(self, data: Any = None) -> None:
        super().randomize(None)

    def alpha(self, h: int, w: int) -> torch.Tensor:
        """The (H, W) blending weight of a fresh set of spots (draws from this transform's RandomState)."""
        yy = torch.arange(h, dtype=torch.float32)[:, None]
        xx = torch.arange(w, dtype=torch.float32)[None, :]
        alpha = torch.zeros(h, w)
        for _ in range(int(self.R.randint(int(self.count[0]), int(self.count[1]) + 1))):
            r = self.R.uniform(*self.radius) * min(h, w)
            ry, rx = r * self.R.uniform(0.6, 1.0), r * self.R.uniform(0.6, 1.0)
            cy, cx = self.R.uniform(0, h), self.R.uniform(0, w)
            peak = self.R.uniform(*self.intensity)
            spot = peak * torch.exp(-0.5 * (((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2))
            alpha = torch.maximum(alpha, spot)
        return alpha

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        self.randomize()
        if not self._do_transform:
            return d
        for key in self.key_iterator(d):
            x = _as_tensor(d[key]).float()
            a = self.alpha(x.shape[-2], x.shape[-1])
            d[key] = x + a * (1.0 - x)
        return d


# --------------------------------------------------------------------------- the named transforms


def _pair(value: Any, what: str) -> tuple[float, float]:
    if isinstance(value, (int, float)):
        return float(value), float(value)
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ConfigError(f"{what}: expected a number or a [low, high] pair, got {value!r}") from None
    return lo, hi


def _modes(keys: Sequence[str]) -> tuple[str, ...]:
    return tuple("nearest" if k == "mask" else "bilinear" for k in keys)


def _flip(p: dict, keys: Sequence[str], size: tuple[int, int]) -> list:
    axes = {"h": [1], "horizontal": [1], "v": [0], "vertical": [0], "both": [1, 0]}.get(str(p["axes"]))
    if axes is None:
        raise ConfigError(f"flip: axes={p['axes']!r}; choose h, v or both")
    return [mt.RandFlipd(keys, prob=p["prob"], spatial_axis=a, allow_missing_keys=True) for a in axes]


def _rotate90(p: dict, keys: Sequence[str], size: tuple[int, int]) -> list:
    return [mt.RandRotate90d(keys, prob=p["prob"], max_k=3, allow_missing_keys=True)]


def _rotate(p: dict, keys: Sequence[str], size: tuple[int, int]) -> list:
    lo, hi = _pair(p["range"], "rotate range")
    if lo == hi:
        lo = -hi
    return [
        mt.RandRotated(
            keys,
            range_x=(math.radians(lo), math.radians(hi)),
            prob=p["prob"],
            keep_size=True,
            mode=_modes(keys),
            padding_mode="zeros",
            allow_missing_keys=True,
        )
    ]


def _zoom(p: dict, keys: Sequence[str], size: tuple[int, int]) -> list:
    return [
        mt.RandZoomd(
            keys,
            prob=p["prob"],
            min_zoom=p["min"],
            max_zoom=p["max"],
            # torch's "nearest" is off by half a pixel against bilinear; "nearest-exact" is not
            mode=tuple("nearest-exact" if m == "nearest" else m for m in _modes(keys)),
            padding_mode="constant",
            keep_size=True,
            allow_missing_keys=True,
        )
    ]


def _affine(p: dict, keys: Sequence[str], size: tuple[int, int]) -> list:
    t = float(p["translate"])
    return [
        mt.RandAffined(
            keys,
            prob=p["prob"],
            rotate_range=math.radians(float(p["rotate"])),
            scale_range=(float(p["scale"]), float(p["scale"])),
            shear_range=(float(p["shear"]), float(p["shear"])),
            translate_range=(t * size[0], t * size[1]),
            mode=_modes(keys),
            padding_mode="zeros",
            allow_missing_keys=True,
        )
    ]


def _elastic(p: dict, keys: Sequence[str], size: tuple[int, int]) -> list:
    spacing = p["spacing"] if p["spacing"] is not None else max(4, max(size) // 8)
    return [
        mt.Rand2DElasticd(
            keys,
            spacing=spacing,
            magnitude_range=_pair(p["magnitude"], "elastic magnitude"),
            prob=p["prob"],
            mode=_modes(keys),
            padding_mode="reflection",
            allow_missing_keys=True,
        )
    ]


def _color_jitter(p: dict, keys: Sequence[str], size: tuple[int, int]) -> list:
    opts = {k: p[k] for k in ("brightness", "contrast", "saturation", "hue", "prob")}
    return [RandColorJitterd("image", **opts)]


def _gamma(p: dict, keys: Sequence[str], size: tuple[int, int]) -> list:
    return [
        mt.RandAdjustContrastd(
            "image", prob=p["prob"], gamma=_pair(p["range"], "gamma range"), allow_missing_keys=True
        )
    ]


def _noise(p: dict, keys: Sequence[str], size: tuple[int, int]) -> list:
    return [
        mt.RandGaussianNoised("image", prob=p["prob"], mean=0.0, std=float(p["std"]), allow_missing_keys=True)
    ]


def _blur(p: dict, keys: Sequence[str], size: tuple[int, int]) -> list:
    sigma = _pair(p["sigma"], "blur sigma")
    return [
        mt.RandGaussianSmoothd("image", sigma_x=sigma, sigma_y=sigma, prob=p["prob"], allow_missing_keys=True)
    ]


def _resized_crop(p: dict, keys: Sequence[str], size: tuple[int, int]) -> list:
    return [RandResizedCropd(keys, size, scale=_pair(p["scale"], "random_resized_crop scale"),
                             ratio=_pair(p["ratio"], "random_resized_crop ratio"), prob=p["prob"])]


def _jpeg(p: dict, keys: Sequence[str], size: tuple[int, int]) -> list:
    return [RandJPEGd("image", quality=_pair(p["quality"], "jpeg quality"), prob=p["prob"])]


def _specular(p: dict, keys: Sequence[str], size: tuple[int, int]) -> list:
    return [RandSpecularHighlightsd("image", count=_pair(p["count"], "specular count"),
                                    radius=_pair(p["radius"], "specular radius"),
                                    intensity=_pair(p["intensity"], "specular intensity"), prob=p["prob"])]


Builder = Callable[[dict, Sequence[str], tuple[int, int]], list]

# name -> (builder, default parameters, one-line description); the single place defaults live.
TRANSFORMS: dict[str, tuple[Builder, dict[str, Any], str]] = {
    "flip": (_flip, {"prob": 0.5, "axes": "both"}, "random horizontal and/or vertical flip"),
    "rotate90": (_rotate90, {"prob": 0.5}, "random multiple of 90 degrees"),
    "rotate": (_rotate, {"range": 15.0, "prob": 0.5}, "random rotation in [-range, range] degrees"),
    "zoom": (_zoom, {"min": 0.8, "max": 1.2, "prob": 0.5}, "random zoom in/out, size kept (alias: scale)"),
    "affine": (
        _affine,
        {"rotate": 15.0, "scale": 0.1, "translate": 0.1, "shear": 0.0, "prob": 0.5},
        "random rotation (deg), scale, translation (fraction of size), shear",
    ),
    "elastic": (
        _elastic,
        {"spacing": None, "magnitude": (1.0, 2.0), "prob": 0.3},
        "smooth random deformation (control-point spacing in px, default size/8)",
    ),
    "color_jitter": (
        _color_jitter,
        {"brightness": 0.2, "contrast": 0.2, "saturation": 0.2, "hue": 0.05, "prob": 0.8},
        "brightness/contrast/saturation/hue jitter (image only)",
    ),
    "gamma": (_gamma, {"range": (0.7, 1.5), "prob": 0.3}, "random gamma (image only)"),
    "gaussian_noise": (_noise, {"std": 0.03, "prob": 0.3}, "additive Gaussian noise (image only)"),
    "blur": (_blur, {"sigma": (0.25, 1.5), "prob": 0.3}, "Gaussian blur, sigma in px (image only)"),
    "random_resized_crop": (
        _resized_crop,
        {"scale": (0.5, 1.0), "ratio": (0.75, 4.0 / 3.0), "prob": 0.5},
        "random crop (area fraction scale, aspect ratio w/h) resized back to the input size",
    ),
    "jpeg": (_jpeg, {"quality": (30, 90), "prob": 0.3}, "JPEG compression artefacts at a random quality (image only)"),
    "specular": (
        _specular,
        {"count": (1, 4), "radius": (0.01, 0.04), "intensity": (0.7, 1.0), "prob": 0.3},
        "synthetic specular highlights: white spots, radius a fraction of the image side (image only)",
    ),
}
ALIASES = {
    "scale": "zoom",
    "color": "color_jitter",
    "colour_jitter": "color_jitter",
    "noise": "gaussian_noise",
    "resized_crop": "random_resized_crop",
    "specular_highlights": "specular",
}

# A common default for polyp/lesion segmentation training.
DEFAULT_TRAIN_SPEC: tuple[str, ...] = ("flip", "rotate", "zoom", "color_jitter")


def _parse(entry: str | Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    if isinstance(entry, str):
        name, params = entry, {}
    elif isinstance(entry, Mapping):
        if "name" not in entry:
            raise ConfigError(f"augmentation {dict(entry)!r} has no 'name'")
        name, params = str(entry["name"]), {k: v for k, v in entry.items() if k != "name"}
    else:
        raise ConfigError(f"augmentation entry {entry!r}: expected a name or a dict with 'name'")
    key = ALIASES.get(name.lower(), name.lower())
    if key not in TRANSFORMS:
        raise ConfigError(f"unknown augmentation '{name}'; available: {', '.join(sorted(TRANSFORMS))}")
    defaults = TRANSFORMS[key][1]
    unknown = sorted(set(params) - set(defaults))
    if unknown:
        raise ConfigError(f"augmentation '{name}': unknown option(s) {unknown}; options: {sorted(defaults)}")
    merged = {**defaults, **params}
    if not 0.0 <= float(merged["prob"]) <= 1.0:
        raise ConfigError(f"augmentation '{name}': prob={merged['prob']} must lie in [0, 1]")
    return key, merged


def build_transforms(
    spec: Sequence[str | Mapping[str, Any]] | None,
    size: tuple[int, int],
    train: bool = True,
    keys: Sequence[str] = KEYS,
) -> mt.Compose:
    """Compose the named augmentations for ``(H, W)`` inputs; identity when ``train`` is False.

    Unknown names or options raise :class:`~medattn.errors.ConfigError` listing the valid ones.
    ``keys`` defaults to ``("image", "mask")``; a missing ``mask`` key is allowed (unlabeled data).
    """
    items = [_parse(entry) for entry in (spec or [])]  # validate even when not training
    keys = tuple(keys)
    if not train:
        return mt.Compose([mt.ToTensord(keys, track_meta=False, allow_missing_keys=True)])
    ops: list = []
    for key, params in items:
        ops += TRANSFORMS[key][0](params, keys, tuple(size))
    ops += [
        ClampIntensityd("image"),
        mt.ToTensord(keys, dtype=torch.float32, track_meta=False, allow_missing_keys=True),
    ]
    return mt.Compose(ops)


def describe_transforms() -> list[tuple[str, str, dict[str, Any]]]:
    """(name, description, defaults) of every augmentation, for docs and ``--help``."""
    return [(name, desc, dict(defaults)) for name, (_, defaults, desc) in TRANSFORMS.items()]


# --------------------------------------------------------------------------- EFEN's augmentation kinds
# Paper 001 (EFEN) augments with "25 types ... including center crop, random rotation, transpose,
# elastic transform, etc." (sec. 4.2), offline. Here they run on the fly, drawn anew every epoch.
# rotate and elastic exist above; the kinds below complete the list the configs use
# (configs/efen_*.yaml, docs/efen.md). Kept in their own section, registered by TRANSFORMS.update.


def _resize_to(x: torch.Tensor, size: tuple[int, int], key: Hashable) -> torch.Tensor:
    """(C, h, w) -> (C, H, W): bilinear for images, nearest-exact for masks (which stay binary)."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    if key == "mask":
        return torch.nn.functional.interpolate(x[None], size=size, mode="nearest-exact")[0]
    return torch.nn.functional.interpolate(x[None], size=size, mode="bilinear", align_corners=False)[0]


class _RandPerKeyd(RandomizableTransform, MapTransform):
    """Shared loop of the transforms below: draw once per sample (``randomize``), then
    :meth:`apply` to every present key's float tensor."""

    def __init__(self, keys: Sequence[Hashable] | Hashable, prob: float) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys=True)
        RandomizableTransform.__init__(self, prob)

    def randomize(self, data: Any = None) -> None:
        super().randomize(None)

    def apply(self, x: torch.Tensor, key: Hashable) -> torch.Tensor:
        raise NotImplementedError

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        self.randomize()
        if not self._do_transform:
            return d
        for key in self.key_iterator(d):
            d[key] = self.apply(_as_tensor(d[key]).float(), key)
        return d


class RandCenterCropResized(_RandPerKeyd):
    """Centre crop of a random fraction ``scale`` of each side, resized back to the input size.

    The crop is centred on the image (EFEN's "center crop"); the fraction is drawn uniformly
    from ``scale`` per sample and shared by image and mask.
    """

    def __init__(self, keys: Sequence[Hashable], scale: tuple[float, float] = (0.7, 0.95), prob: float = 0.3) -> None:
        super().__init__(keys, prob)
        if not 0 < scale[0] <= scale[1] <= 1:
            raise ConfigError(f"center_crop: scale {list(scale)} must satisfy 0 < low <= high <= 1")
        self.scale = scale
        self._f = 1.0

    def randomize(self, data: Any = None) -> None:
        super().randomize(None)
        if self._do_transform:
            self._f = float(self.R.uniform(*self.scale))

    def apply(self, x: torch.Tensor, key: Hashable) -> torch.Tensor:
        h, w = x.shape[-2:]
        ch, cw = max(1, round(h * self._f)), max(1, round(w * self._f))
        top, left = (h - ch) // 2, (w - cw) // 2
        return _resize_to(x[:, top: top + ch, left: left + cw], (h, w), key)


class RandTransposed(_RandPerKeyd):
    """Swap the two spatial axes (reflection about the main diagonal); non-square inputs are
    resized back to their ``(H, W)`` so batches keep one shape."""

    def __init__(self, keys: Sequence[Hashable], prob: float = 0.5) -> None:
        super().__init__(keys, prob)

    def apply(self, x: torch.Tensor, key: Hashable) -> torch.Tensor:
        return _resize_to(x.transpose(-1, -2).contiguous(), tuple(x.shape[-2:]), key)


class RandChannelShuffled(_RandPerKeyd):
    """Random permutation of the colour channels (image only; one-channel images are left alone)."""

    def __init__(self, keys: Sequence[Hashable] | Hashable = "image", prob: float = 0.1) -> None:
        super().__init__(keys, prob)
        self._perm: list[int] = [0, 1, 2]

    def randomize(self, data: Any = None) -> None:
        super().randomize(None)
        if self._do_transform:
            self._perm = [int(i) for i in self.R.permutation(3)]

    def apply(self, x: torch.Tensor, key: Hashable) -> torch.Tensor:
        return x[self._perm] if x.shape[0] == 3 else x


class RandGrayscaled(_RandPerKeyd):
    """RGB to its ITU-R 601 luma, repeated on the three channels (image only)."""

    def __init__(self, keys: Sequence[Hashable] | Hashable = "image", prob: float = 0.1) -> None:
        super().__init__(keys, prob)

    def apply(self, x: torch.Tensor, key: Hashable) -> torch.Tensor:
        if x.shape[0] != 3:
            return x
        return (0.299 * x[0] + 0.587 * x[1] + 0.114 * x[2]).expand(3, -1, -1).clone()


def _center_crop(p: dict, keys: Sequence[str], size: tuple[int, int]) -> list:
    return [RandCenterCropResized(keys, scale=_pair(p["scale"], "center_crop scale"), prob=p["prob"])]


def _transpose(p: dict, keys: Sequence[str], size: tuple[int, int]) -> list:
    return [RandTransposed(keys, prob=p["prob"])]


def _grid_distortion(p: dict, keys: Sequence[str], size: tuple[int, int]) -> list:
    return [mt.RandGridDistortiond(keys, num_cells=int(p["cells"]), prob=p["prob"],
                                   distort_limit=_pair(p["limit"], "grid_distortion limit"),
                                   mode=tuple("nearest" if k == "mask" else "bilinear" for k in keys),
                                   padding_mode="border", allow_missing_keys=True)]


def _sharpen(p: dict, keys: Sequence[str], size: tuple[int, int]) -> list:
    return [mt.RandGaussianSharpend("image", prob=p["prob"], allow_missing_keys=True)]


def _channel_shuffle(p: dict, keys: Sequence[str], size: tuple[int, int]) -> list:
    return [RandChannelShuffled("image", prob=p["prob"])]


def _grayscale(p: dict, keys: Sequence[str], size: tuple[int, int]) -> list:
    return [RandGrayscaled("image", prob=p["prob"])]


def _coarse_dropout(p: dict, keys: Sequence[str], size: tuple[int, int]) -> list:
    side = max(1, round(float(p["size"]) * min(size)))
    return [mt.RandCoarseDropoutd("image", holes=int(p["holes"]), spatial_size=(side, side), fill_value=0.0,
                                  prob=p["prob"], allow_missing_keys=True)]


TRANSFORMS.update({
    "center_crop": (_center_crop, {"scale": (0.7, 0.95), "prob": 0.3},
                    "centre crop of a random fraction of each side, resized back (EFEN)"),
    "transpose": (_transpose, {"prob": 0.5}, "swap height and width, resized back if not square (EFEN)"),
    "grid_distortion": (_grid_distortion, {"cells": 5, "limit": (-0.3, 0.3), "prob": 0.2},
                        "random grid distortion, per-cell scale limit (EFEN)"),
    "sharpen": (_sharpen, {"prob": 0.2}, "Gaussian unsharp sharpening (image only, EFEN)"),
    "channel_shuffle": (_channel_shuffle, {"prob": 0.1}, "random permutation of the RGB channels (image only, EFEN)"),
    "grayscale": (_grayscale, {"prob": 0.1}, "RGB to gray on three channels (image only, EFEN)"),
    "coarse_dropout": (_coarse_dropout, {"holes": 4, "size": 0.08, "prob": 0.2},
                       "zeroed square holes, side a fraction of the short side (image only, EFEN)"),
})
ALIASES.update({"centre_crop": "center_crop", "gray": "grayscale", "cutout": "coarse_dropout"})

#: EFEN's on-the-fly augmentation (paper 001 sec. 4.2 names centre crop, rotation, transpose and
#: elastic among its 25 kinds; the others here are the common ones of such lists), used by
#: configs/efen_cvc*.yaml. No rotate90: on the 384 x 288 frames it would change the shape (flips +
#: transpose give the same eight symmetries).
EFEN_AUGMENT: tuple[str, ...] = (
    "flip", "transpose", "rotate", "center_crop", "zoom", "affine", "elastic", "grid_distortion",
    "color_jitter", "gamma", "blur", "sharpen", "gaussian_noise", "channel_shuffle", "grayscale", "coarse_dropout",
)
