"""PyTorch datasets over :class:`~medattn.data.types.Sample` lists.

Images are read through :mod:`medattn.io` (``read_rgb`` / ``read_gray`` /
``read_mask``), resized to ``size`` (bilinear with antialiasing for the image,
nearest for the mask) *before* augmentation, scaled to [0, 1] and returned as
float32 tensors. Masks follow the project rule: foreground = value > 127.

Determinism: the augmentation pipeline draws from its own random states.
``dataset.set_random_state(seed)`` fixes them in the main process; with a
``torch.utils.data.DataLoader`` pass ``worker_init_fn=medattn.data.worker_init_fn``
(and a seeded ``generator``) so that each worker reseeds its copy from
``torch.initial_seed()``, which the loader derives from its generator and the
worker id; ``monai.data.DataLoader`` does the same on its own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from medattn.data.layouts import discover
from medattn.data.types import DatasetIndex, Sample
from medattn.errors import DatasetError, MedattnIOError


def _check_size(size: Sequence[int] | int | None) -> tuple[int, int] | None:
    if size is None:
        return None
    if isinstance(size, int):
        size = (size, size)
    h, w = (int(v) for v in size)
    if h < 1 or w < 1:
        raise DatasetError(f"size {tuple(size)}: height and width must be positive")
    return h, w


def read_sample_mask(sample: Sample) -> np.ndarray:
    """The binary mask (bool (H, W), foreground = value > 127) of ``sample``, instance masks merged."""
    from medattn.io import read_mask

    files = [f for f in (sample.mask, *sample.extra_masks) if f is not None]
    if not files:
        raise DatasetError(f"sample '{sample.id}' ({sample.image}) has no mask")
    mask = read_mask(files[0])
    for f in files[1:]:
        other = read_mask(f)
        if other.shape != mask.shape:
            raise MedattnIOError(f, f"mask size {other.shape} differs from {files[0].name} {mask.shape}")
        mask |= other
    return mask


#: input channel counts of the datasets: gray, RGB, RGB + gray (HLF-Net's ISIC input)
CHANNEL_CHOICES = (1, 3, 4)


def _read_image(path: Path, in_channels: int) -> np.ndarray:
    """uint8 (H, W, C) with C = in_channels (4: RGB + luminance, :func:`medattn.io.rgb_plus_gray`)."""
    from medattn.io import read_gray, read_rgb, rgb_plus_gray

    if in_channels == 1:
        return read_gray(path)[..., None]
    if in_channels == 4:
        return rgb_plus_gray(read_rgb(path))
    return read_rgb(path)


def _to_chw(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))


def _resize_image(img: torch.Tensor, size: tuple[int, int] | None) -> torch.Tensor:
    """uint8 (C, H, W) -> float (C, h, w) in [0, 1]."""
    x = img.float().div_(255.0)
    if size is None or tuple(x.shape[1:]) == size:
        return x
    antialias = size[0] < x.shape[1] or size[1] < x.shape[2]
    out = F.interpolate(x[None], size=size, mode="bilinear", align_corners=False, antialias=antialias)[0]
    return out.clamp_(0.0, 1.0)


def _resize_mask(mask: torch.Tensor, size: tuple[int, int] | None) -> torch.Tensor:
    """bool (H, W) -> float (1, h, w) in {0, 1}; "nearest-exact" samples pixel centres like PIL."""
    m = mask.float()[None]
    if size is None or tuple(m.shape[1:]) == size:
        return m
    return F.interpolate(m[None], size=size, mode="nearest-exact")[0]


def _apply(transforms: Callable | None, item: dict[str, Any]) -> dict[str, Any]:
    if transforms is None:
        return item
    out = dict(transforms(item))
    for key in ("image", "mask"):
        if key in out:
            value = out[key]
            value = value.as_tensor() if hasattr(value, "as_tensor") else torch.as_tensor(value)
            out[key] = value.float().contiguous()
    return out


def _samples_of(source: DatasetIndex | Iterable[Sample] | Iterable[str | Path] | str | Path) -> list[Sample]:
    if isinstance(source, (str, Path)):
        return list(discover(source).samples)
    if isinstance(source, DatasetIndex):
        return list(source.samples)
    out = []
    for item in source:
        if isinstance(item, Sample):
            out.append(item)
        else:
            p = Path(item)
            out.append(Sample(id=p.stem, image=p))
    return out


class _Base(Dataset):
    def __init__(self, transforms: Callable | None, cache: bool) -> None:
        self.transforms = transforms
        self.cache = cache
        self._cache: dict[int, dict[str, torch.Tensor]] = {}

    def set_random_state(self, seed: int) -> None:
        """Seed the augmentation pipeline (MONAI ``Randomizable``) for reproducible samples."""
        if self.transforms is not None and hasattr(self.transforms, "set_random_state"):
            self.transforms.set_random_state(seed=int(seed) % (2**32))


class SegmentationDataset(_Base):
    """Image/mask pairs as ``{"image": (C, H, W), "mask": (1, H, W), "id": str, "orig_size": (2,)}``.

    Args:
        samples: a :class:`DatasetIndex`, a list of :class:`Sample` (with masks) or a folder.
        size: ``(H, W)`` every pair is resized to before augmentation; ``None`` keeps the
            original size (batching then needs equal sizes).
        transforms: a callable on the dict, e.g. :func:`medattn.data.build_transforms`.
        in_channels: 3 (RGB), 1 (luminance) or 4 (RGB + luminance).
        cache: keep the resized, un-augmented pairs in memory (uint8 image, bool mask).

    ``orig_size`` is the (H, W) of the file, for resizing predictions back.

    >>> ds = SegmentationDataset(discover("../shared/data/kvasir-seg"), size=(352, 352))  # doctest: +SKIP
    >>> ds[0]["image"].shape  # doctest: +SKIP
    torch.Size([3, 352, 352])
    """

    def __init__(
        self,
        samples: DatasetIndex | Iterable[Sample] | str | Path,
        size: Sequence[int] | int | None = None,
        transforms: Callable | None = None,
        in_channels: int = 3,
        cache: bool = False,
    ) -> None:
        super().__init__(transforms, cache)
        if in_channels not in CHANNEL_CHOICES:
            raise DatasetError(f"in_channels={in_channels}: use 1 (gray), 3 (RGB) or 4 (RGB + gray)")
        self.samples = _samples_of(samples)
        unlabeled = [s for s in self.samples if s.mask is None and not s.extra_masks]
        if unlabeled:
            raise DatasetError(
                f"{len(unlabeled)} sample(s) have no mask (e.g. {unlabeled[0].image}); "
                "use UnlabeledDataset for images without masks"
            )
        self.size = _check_size(size)
        self.in_channels = in_channels

    def __len__(self) -> int:
        return len(self.samples)

    def load(self, index: int) -> dict[str, Any]:
        """The resized pair before augmentation (image float [0, 1], mask float {0, 1})."""
        if index in self._cache:
            c = self._cache[index]
            return {
                "image": c["image"].float() / 255.0,
                "mask": c["mask"].float(),
                "orig_size": c["orig_size"],
            }
        sample = self.samples[index]
        image = _read_image(sample.image, self.in_channels)
        mask = read_sample_mask(sample)
        if mask.shape != image.shape[:2]:
            raise MedattnIOError(
                sample.mask,
                f"mask size {mask.shape[1]}x{mask.shape[0]} differs from its image "
                f"{sample.image.name} ({image.shape[1]}x{image.shape[0]})",
            )
        orig = torch.tensor(image.shape[:2], dtype=torch.long)
        img_t = _resize_image(_to_chw(image), self.size)
        mask_t = _resize_mask(torch.from_numpy(mask), self.size)
        if self.cache:
            self._cache[index] = {
                "image": (img_t * 255.0).round().to(torch.uint8),
                "mask": mask_t.bool(),
                "orig_size": orig,
            }
            img_t = self._cache[index]["image"].float() / 255.0
        return {"image": img_t, "mask": mask_t, "orig_size": orig}

    def __getitem__(self, index: int) -> dict[str, Any]:
        if index < 0:
            index += len(self)
        item = self.load(index)
        out = _apply(self.transforms, {"image": item["image"], "mask": item["mask"]})
        return {
            "image": out["image"],
            "mask": out["mask"],
            "id": self.samples[index].id,
            "orig_size": item["orig_size"],
        }


class UnlabeledDataset(_Base):
    """Images without masks as ``{"image": (C, H, W), "id": str, "orig_size": (2,)}``.

    ``paths_or_index`` is a folder, a :class:`DatasetIndex`, samples or image paths; masks, if
    any, are ignored (self-supervised pretraining). ``transforms`` see only the ``image`` key.
    """

    def __init__(
        self,
        paths_or_index: DatasetIndex | Iterable[Sample] | Iterable[str | Path] | str | Path,
        size: Sequence[int] | int | None = None,
        in_channels: int = 3,
        transforms: Callable | None = None,
        cache: bool = False,
    ) -> None:
        super().__init__(transforms, cache)
        if in_channels not in CHANNEL_CHOICES:
            raise DatasetError(f"in_channels={in_channels}: use 1 (gray), 3 (RGB) or 4 (RGB + gray)")
        self.samples = _samples_of(paths_or_index)
        ids = [s.id for s in self.samples]
        if len(set(ids)) != len(ids):
            # paths from different folders may share a stem: fall back to full paths
            self.samples = [Sample(id=str(s.image), image=s.image, dataset=s.dataset) for s in self.samples]
        self.size = _check_size(size)
        self.in_channels = in_channels

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict[str, Any]:
        if index < 0:
            index += len(self)
        if index in self._cache:
            image = self._cache[index]["image"].float() / 255.0
            orig = self._cache[index]["orig_size"]
        else:
            arr = _read_image(self.samples[index].image, self.in_channels)
            orig = torch.tensor(arr.shape[:2], dtype=torch.long)
            image = _resize_image(_to_chw(arr), self.size)
            if self.cache:
                self._cache[index] = {"image": (image * 255.0).round().to(torch.uint8), "orig_size": orig}
        out = _apply(self.transforms, {"image": image})
        return {"image": out["image"], "id": self.samples[index].id, "orig_size": orig}


def worker_init_fn(worker_id: int) -> None:
    """DataLoader hook: reseed the worker's copy of the augmentation from ``torch.initial_seed()``."""
    info = torch.utils.data.get_worker_info()
    if info is None:
        return
    seed = torch.initial_seed() % (2**32)
    np.random.seed(seed)
    dataset = info.dataset
    # unwrap torch Subset / ConcatDataset wrappers
    stack = [dataset]
    while stack:
        ds = stack.pop()
        if hasattr(ds, "set_random_state"):
            ds.set_random_state(seed)
        if hasattr(ds, "dataset"):
            stack.append(ds.dataset)
        stack.extend(getattr(ds, "datasets", []))
