"""PyTorch datasets over :class:`~medattn.data.types.Sample` lists.

Images are read through :mod:`medattn.io` (``read_rgb`` / ``read_gray`` /
``read_mask``), resized to ``size`` (bilinear with antialiasing for the image,
nearest for the mask) *before* augmentation, scaled to [0, 1] and returned as
float32 tensors. Masks follow the project rule: foreground = value > 127.

Caching: ``cache=True`` keeps the resized, un-augmented pairs in memory (one copy per loader
worker); ``cache_dir=`` stores them once as memory-mapped ``.npy`` files (:class:`DiskCache`),
shared by workers through the page cache and reused by later runs. Both store the image as
uint8, so a cached image differs from the uncached float resize by at most 1/510.

Determinism: the augmentation pipeline draws from its own random states.
``dataset.set_random_state(seed)`` fixes them in the main process; with a
``torch.utils.data.DataLoader`` pass ``worker_init_fn=medattn.data.worker_init_fn``
(and a seeded ``generator``) so that each worker reseeds its copy from
``torch.initial_seed()``, which the loader derives from its generator and the
worker id; ``monai.data.DataLoader`` does the same on its own.
"""

from __future__ import annotations

import hashlib
import json
import os
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


class DiskCache:
    """Decoded and resized samples as memory-mapped ``.npy`` files in ``folder``.

    Each entry is one file ``<key>.npy`` holding a one-element record array with fields
    ``orig`` (int64 (2,): the file's (H, W)) and ``data`` (uint8 (C + 1, h, w): the resized
    image channels, then the mask as 0/1). The key hashes every source file's absolute path,
    size and modification time with the target size and channel count, so an edited image or
    another input size gets a new entry and stale entries are never read. Entries are written
    to a temporary file and renamed, so concurrent loader workers and killed runs leave no
    half-written entry.
    """

    VERSION = 1

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder)
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise MedattnIOError(self.folder, f"cannot create the cache folder ({exc.strerror or exc})") from None

    def key(self, files: Sequence[Path], size: tuple[int, int] | None, in_channels: int) -> str:
        """Hash of the files' identities (path, size, mtime) and the preprocessing."""
        ident: list[Any] = [self.VERSION, list(size) if size else None, in_channels]
        for f in files:
            st = Path(f).stat()
            ident.append([str(Path(f).resolve()), st.st_size, st.st_mtime_ns])
        return hashlib.sha1(json.dumps(ident).encode()).hexdigest()

    def path(self, key: str) -> Path:
        return self.folder / f"{key}.npy"

    def get(self, key: str) -> np.ndarray | None:
        """The memory-mapped record of ``key`` (None when absent or unreadable)."""
        try:
            rec = np.load(self.path(key), mmap_mode="r")
        except FileNotFoundError:
            return None
        except (OSError, ValueError):  # truncated by a crash outside our atomic writes: rebuild it
            return None
        if rec.dtype.names != ("orig", "data") or rec.shape != (1,):
            return None
        return rec

    def put(self, key: str, orig: Sequence[int], data: np.ndarray) -> None:
        """Store ``data`` (uint8 (C + 1, h, w)) with the original size, atomically."""
        rec = np.zeros(1, dtype=[("orig", "<i8", (2,)), ("data", "u1", data.shape)])
        rec["orig"][0] = orig
        rec["data"][0] = data
        target = self.path(key)
        tmp = target.with_name(f".{target.stem}.{os.getpid()}.tmp.npy")
        try:
            np.save(tmp, rec)
            os.replace(tmp, target)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise MedattnIOError(target, f"cannot write the cache entry ({exc.strerror or exc})") from None


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
        cache_dir: keep them in memory-mapped files there instead (:class:`DiskCache`; same values
            as ``cache``); :meth:`prepare` fills it up front.

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
        cache_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        super().__init__(transforms, cache)
        if in_channels not in CHANNEL_CHOICES:
            raise DatasetError(f"in_channels={in_channels}: use 1 (gray), 3 (RGB) or 4 (RGB + gray)")
        self.disk = DiskCache(cache_dir) if cache_dir is not None else None
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

    def _disk_key(self, sample: Sample) -> str:
        files = [sample.image, *(f for f in (sample.mask, *sample.extra_masks) if f is not None)]
        try:
            return self.disk.key(files, self.size, self.in_channels)  # type: ignore[union-attr]
        except OSError as exc:
            raise MedattnIOError(getattr(exc, "filename", None) or sample.image,
                                 f"cannot read ({exc.strerror or exc})") from None

    def prepare(self, progress: bool = True, description: str = "caching images") -> int:
        """Fill the disk cache with every missing sample (rich progress); the number decoded."""
        if self.disk is None:
            return 0
        from rich.progress import Progress

        todo = [i for i, s in enumerate(self.samples) if self.disk.get(self._disk_key(s)) is None]
        with Progress(disable=not progress or not todo, transient=True) as bar:
            task = bar.add_task(f"{description} ({self.disk.folder})", total=len(todo))
            for i in todo:
                self.load(i)
                bar.advance(task)
        return len(todo)

    def load(self, index: int) -> dict[str, Any]:
        """The resized pair before augmentation (image float [0, 1], mask float {0, 1})."""
        key = None
        if self.disk is not None:
            key = self._disk_key(self.samples[index])
            rec = self.disk.get(key)
            if rec is not None:
                data = torch.from_numpy(np.array(rec["data"][0]))
                c = self.in_channels
                return {"image": data[:c].float() / 255.0, "mask": data[c:].float(),
                        "orig_size": torch.from_numpy(np.array(rec["orig"][0]))}
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
        if key is not None:
            img_u8 = (img_t * 255.0).round().to(torch.uint8)
            self.disk.put(key, image.shape[:2], torch.cat([img_u8, mask_t.to(torch.uint8)]).numpy())  # type: ignore[union-attr]
            return {"image": img_u8.float() / 255.0, "mask": mask_t, "orig_size": orig}
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
