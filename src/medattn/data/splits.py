"""Train/validation/test splits: the PraNet protocol, seeded ratio splits and k-fold.

Every split is reproducible: samples are first put in id order (so the order the
files were listed in does not matter), then shuffled with ``numpy.random.default_rng(seed)``.
Splits are saved as JSON (ids and paths relative to a root folder) with
:func:`save_split` and read back with :func:`load_split`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medattn.data.layouts import discover, part_of
from medattn.data.types import DatasetIndex, Sample
from medattn.errors import ConfigError, DatasetError, MedattnIOError
from medattn.utils.fileio import atomic_write_text

SPLIT_FORMAT = "medattn-split/1"
PRANET_TEST_FILES = {
    "kvasir-seg": "kvasir-seg_pranet_test.txt",
    "cvc-clinicdb": "cvc-clinicdb_pranet_test.txt",
}


def _read_list(path: Path) -> list[str]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise MedattnIOError(path, "split list not found") from None
    return [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]


def listed_samples(index: DatasetIndex, list_file: str | Path) -> list[Sample]:
    """The samples of ``index`` named in a plain list file, in the list's order.

    One image file name a line (``#`` comments and blank lines ignored), as in
    PraNet's ``kvasir-seg_pranet_test.txt``; a name matches an image by file
    name, else by stem (``x.png`` finds ``x.jpg``).
    """
    list_file = Path(list_file)
    by_name = {s.image.name: s for s in index.samples}
    by_stem = {s.image.stem: s for s in index.samples}
    out: list[Sample] = []
    for name in _read_list(list_file):
        sample = by_name.get(name) or by_stem.get(Path(name).stem)
        if sample is None:
            raise DatasetError(f"{list_file}: '{name}' is not an image of {index.root}")
        out.append(sample)
    if len({s.id for s in out}) != len(out):
        raise DatasetError(f"{list_file}: lists a file twice")
    if not out:
        raise DatasetError(f"{list_file}: lists no image")
    return out


def pranet_split(data_root: str | Path, splits_dir: str | Path | None = None) -> dict[str, list[Sample]]:
    """The PraNet protocol (Fan et al., MICCAI 2020) on Kvasir-SEG and CVC-ClinicDB.

    Test sets are the file names listed in ``splits/kvasir-seg_pranet_test.txt`` (100) and
    ``splits/cvc-clinicdb_pranet_test.txt`` (62); training is everything else
    (900 Kvasir + 550 ClinicDB = 1450). Returns ``{"train", "test_kvasir", "test_clinicdb"}``.
    """
    root = Path(data_root)
    lists = Path(splits_dir) if splits_dir is not None else root / "splits"
    out: dict[str, list[Sample]] = {"train": []}
    for folder, key in (("kvasir-seg", "test_kvasir"), ("cvc-clinicdb", "test_clinicdb")):
        index = discover(root / folder, layout=folder)
        test = listed_samples(index, lists / PRANET_TEST_FILES[folder])
        test_ids = {s.id for s in test}
        out["train"] += [s for s in index.samples if s.id not in test_ids]
        out[key] = test
    return out


def _ordered(samples: Sequence[Sample]) -> list[Sample]:
    ids = [(s.dataset, s.id) for s in samples]
    if len(set(ids)) != len(ids):
        raise DatasetError("samples have duplicate ids; cannot split them reproducibly")
    return sorted(samples, key=lambda s: (s.dataset, s.id))


def _part_sizes(n: int, ratios: Sequence[float]) -> list[int]:
    """Largest-remainder rounding of ``n * ratio``; every non-zero part gets one sample when n allows."""
    total = float(sum(ratios))
    exact = [n * r / total for r in ratios]
    sizes = [int(np.floor(e)) for e in exact]
    order = sorted(range(len(ratios)), key=lambda i: (exact[i] - sizes[i], -i), reverse=True)
    for i in order[: n - sum(sizes)]:
        sizes[i] += 1
    for i, r in enumerate(ratios):
        if r > 0 and sizes[i] == 0:
            donor = max(range(len(sizes)), key=lambda j: sizes[j])
            if sizes[donor] > 1:
                sizes[donor] -= 1
                sizes[i] += 1
    return sizes


def parse_ratios(text: str) -> tuple[float, ...]:
    """``"7:1:2"`` -> ``(7.0, 1.0, 2.0)``."""
    try:
        ratios = tuple(float(t) for t in text.replace("/", ":").replace(",", ":").split(":"))
    except ValueError:
        raise ConfigError(f"ratios '{text}': expected numbers separated by ':' such as 7:1:2") from None
    _check_ratios(ratios)
    return ratios


def _check_ratios(ratios: Sequence[float]) -> None:
    if not 2 <= len(ratios) <= 3 or any(r < 0 for r in ratios) or sum(ratios) <= 0:
        raise ConfigError(f"ratios {tuple(ratios)}: give 2 or 3 non-negative parts (train:val[:test])")


def ratio_split(
    samples: Sequence[Sample], ratios: Sequence[float] = (7, 1, 2), seed: int = 0
) -> dict[str, list[Sample]]:
    """Seeded random split by ratios: 3 parts give ``train/val/test``, 2 parts ``train/val``."""
    _check_ratios(ratios)
    ordered = _ordered(samples)
    perm = np.random.default_rng(seed).permutation(len(ordered))
    names = ("train", "val", "test")[: len(ratios)]
    out: dict[str, list[Sample]] = {}
    start = 0
    for name, size in zip(names, _part_sizes(len(ordered), ratios), strict=True):
        out[name] = [ordered[i] for i in perm[start : start + size]]
        start += size
    return out


def kfold_split(samples: Sequence[Sample], k: int = 5, seed: int = 0) -> list[dict[str, list[Sample]]]:
    """Seeded k-fold: fold ``i`` validates on the ``i``-th of k near-equal parts and trains on the rest."""
    ordered = _ordered(samples)
    if k < 2 or k > len(ordered):
        raise ConfigError(f"k-fold with k={k}: need 2 <= k <= number of samples ({len(ordered)})")
    perm = np.random.default_rng(seed).permutation(len(ordered))
    parts = np.array_split(perm, k)
    folds = []
    for i in range(k):
        val = [ordered[j] for j in parts[i]]
        train = [ordered[j] for p, part in enumerate(parts) if p != i for j in part]
        folds.append({"train": train, "val": val})
    return folds


_TRAIN_PARTS, _VAL_PARTS, _TEST_PARTS = ("train", "training"), ("val", "valid", "validation"), ("test", "testing")


def folder_split(samples: Sequence[Sample], val_ratio: float = 0.1, seed: int = 0) -> dict[str, list[Sample]]:
    """The parts of a dataset released already split (layout ``presplit``) as ``train/val/test``.

    The ``test`` folder is the test part. Without one, the released *validation* folder becomes
    the test part and the validation part (checkpoint choice) is a seeded ``val_ratio`` share of
    the training folder, so that no choice is made on the images that are scored. This is the
    ISIC 2017 segmentation protocol here: the 600 official test masks are not available, so the
    150 official validation pairs are the test set and 10 % of the 2000 training pairs validate.
    """
    by_part: dict[str, list[Sample]] = {}
    for s in samples:
        by_part.setdefault(part_of(s).lower(), []).append(s)
    unknown = sorted(set(by_part) - {*_TRAIN_PARTS, *_VAL_PARTS, *_TEST_PARTS})
    if unknown:
        raise DatasetError(f"unknown part folders {unknown}; expected train, val, test")
    train = [s for k in _TRAIN_PARTS for s in by_part.get(k, [])]
    val = [s for k in _VAL_PARTS for s in by_part.get(k, [])]
    test = [s for k in _TEST_PARTS for s in by_part.get(k, [])]
    if not train:
        raise DatasetError("the dataset has no train/ part")
    if not test:
        test, val = val, []
    if not val:
        if not 0.0 < val_ratio < 1.0:
            raise ConfigError(f"val_ratio {val_ratio}: give a share in (0, 1) to carve validation from train")
        parts = ratio_split(train, (1.0 - val_ratio, val_ratio), seed=seed)
        train, val = parts["train"], parts["val"]
    out = {"train": train, "val": val}
    if test:
        out["test"] = test
    return out


# --------------------------------------------------------------------------- files


def _rel(path: Path | None, root: Path) -> str | None:
    if path is None:
        return None
    return Path(os.path.relpath(Path(path).resolve(), root)).as_posix()


def save_split(
    path: str | Path,
    split: Mapping[str, Sequence[Sample]],
    root: str | Path | None = None,
    meta: Mapping[str, Any] | None = None,
    relative_root: bool = False,
) -> Path:
    """Write ``split`` as JSON (atomically): ids, dataset names and paths relative to ``root``.

    ``root`` defaults to the deepest folder holding every file; it is stored as an absolute
    path and can be overridden when loading (for a moved dataset). ``relative_root`` stores it
    relative to the split file's folder instead, for a split committed next to the code (the
    data then has to sit at the same place relative to the checkout, e.g. ``../shared/data``).
    ``meta`` (protocol, seed, ratios ...) is stored alongside for provenance.
    """
    files = [
        Path(f).resolve()
        for part in split.values()
        for s in part
        for f in (s.image, s.mask, *s.extra_masks)
        if f
    ]
    if not files:
        raise DatasetError("cannot save an empty split")
    base = Path(root).resolve() if root is not None else Path(os.path.commonpath([f.parent for f in files]))
    doc = {
        "format": SPLIT_FORMAT,
        "root": _rel(base, Path(path).resolve().parent) if relative_root else str(base),
        "meta": dict(meta or {}),
        "counts": {name: len(part) for name, part in split.items()},
        "splits": {
            name: [
                {
                    "id": s.id,
                    "dataset": s.dataset,
                    "image": _rel(s.image, base),
                    "mask": _rel(s.mask, base),
                    **({"extra_masks": [_rel(m, base) for m in s.extra_masks]} if s.extra_masks else {}),
                }
                for s in part
            ]
            for name, part in split.items()
        },
    }
    return atomic_write_text(path, json.dumps(doc, indent=1) + "\n")


def load_split(path: str | Path, root: str | Path | None = None) -> dict[str, list[Sample]]:
    """Read a split written by :func:`save_split`; ``root`` relocates the relative paths."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise MedattnIOError(path, "split file not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MedattnIOError(path, f"not a JSON split file ({exc})") from None
    if (
        not isinstance(doc, dict)
        or doc.get("format") != SPLIT_FORMAT
        or not isinstance(doc.get("splits"), dict)
    ):
        raise MedattnIOError(path, f"not a medattn split file (expected format '{SPLIT_FORMAT}')")
    base = Path(root) if root is not None else Path(doc.get("root", path.parent))
    if not base.is_absolute():
        base = (path.parent / base).resolve()

    def resolve(rel: str | None) -> Path | None:
        return None if rel is None else base / rel

    out: dict[str, list[Sample]] = {}
    try:
        for name, entries in doc["splits"].items():
            out[name] = [
                Sample(
                    id=str(e["id"]),
                    image=base / e["image"],
                    mask=resolve(e.get("mask")),
                    dataset=str(e.get("dataset", "")),
                    extra_masks=tuple(base / m for m in e.get("extra_masks", ())),
                )
                for e in entries
            ]
    except (KeyError, TypeError) as exc:
        raise MedattnIOError(path, f"malformed split entry ({exc})") from None
    return out


def parse_merge_part(text: str) -> tuple[str, list[tuple[Path, str]]]:
    """``NAME=FILE:PART[,FILE:PART...]`` (a part of the merged split and where its samples come from)."""
    name, sep, sources = text.partition("=")
    if not sep or not name.strip() or not sources.strip():
        raise ConfigError(f"--part {text!r}: expected NAME=FILE:PART[,FILE:PART...]")
    out = []
    for source in sources.split(","):
        file, sep, part = source.strip().rpartition(":")
        if not sep or not file or not part:
            raise ConfigError(f"--part {text!r}: {source.strip()!r} is not FILE:PART")
        out.append((Path(file), part))
    return name.strip(), out


def merge_splits(parts: Mapping[str, Sequence[tuple[str | Path, str]]]) -> dict[str, list[Sample]]:
    """A split whose part ``name`` gathers the listed ``(split file, part)`` pairs, in order.

    Train on several data sets at once (for example ISIC 2017 training pairs together with PH2
    folds) while keeping each test set a separate part. Refuses a missing part, and an image
    that lands in two parts (a test image must never be trained on) or twice in one part.
    """
    loaded: dict[Path, dict[str, list[Sample]]] = {}
    out: dict[str, list[Sample]] = {}
    where: dict[Path, str] = {}
    for name, sources in parts.items():
        out[name] = []
        for file, part in sources:
            file = Path(file)
            if file not in loaded:
                loaded[file] = load_split(file)
            if part not in loaded[file]:
                raise MedattnIOError(file, f"no part {part!r} (it has {', '.join(loaded[file])})")
            for sample in loaded[file][part]:
                image = sample.image.resolve()
                if image in where:
                    raise DatasetError(f"{image} is in part {where[image]!r} and again in part {name!r} "
                                       f"(from {file}:{part})")
                where[image] = name
                out[name].append(sample)
    return out


def _is_json_file(path: Path) -> bool:
    try:
        with path.open("rb") as fh:
            head = fh.read(4096).lstrip()
    except FileNotFoundError:
        raise MedattnIOError(path, "split file not found") from None
    except OSError as exc:
        raise MedattnIOError(path, f"cannot read the split file ({exc.strerror or exc})") from None
    return head.startswith(b"{")


def _labelled(samples: Sequence[Sample], where: str) -> list[Sample]:
    lonely = [s.id for s in samples if s.mask is None and not s.extra_masks]
    if lonely:
        more = ", ..." if len(lonely) > 5 else ""
        raise DatasetError(f"{where}: {len(lonely)} images without a mask: {', '.join(lonely[:5])}{more}")
    return list(samples)


def evaluation_samples(data: str | Path, split: str | Path | None = None) -> list[Sample]:
    """The labelled samples of the dataset folder ``data`` that an evaluation scores.

    * ``split`` is ``None``: every labelled image of ``data``;
    * a plain list, one image file name a line (PraNet's ``kvasir-seg_pranet_test.txt``,
      ``../shared/data/splits/``): those images of ``data``, in the list's order;
    * a medattn JSON split (:func:`save_split`): its ``test*`` parts, restricted to the
      images inside ``data``, so that ``data=.../kvasir-seg`` with a PraNet split that
      pools Kvasir-SEG and CVC-ClinicDB scores the Kvasir part only.
    """
    data = Path(data)
    if split is None:
        index = discover(data)
        samples = [s for s in index.samples if s.mask is not None or s.extra_masks]
        if not samples:
            raise DatasetError(f"{data}: no image/mask pairs found (layout {index.layout})")
        return samples
    split = Path(split)
    if not _is_json_file(split):
        return _labelled(listed_samples(discover(data), split), str(split))
    parts = load_split(split)
    keys = [k for k in parts if k.startswith("test")]
    if not keys:
        raise DatasetError(f"{split}: split has no test part (parts: {', '.join(parts)})")
    root = data.expanduser().resolve()
    pooled = [s for k in keys for s in parts[k]]
    inside = [s for s in pooled if Path(s.image).resolve().is_relative_to(root)]
    if not inside:
        sets = sorted({s.dataset or Path(s.image).parent.name for s in pooled})
        raise DatasetError(
            f"{split}: no test image lies in {root} (the test parts hold {len(pooled)} images of "
            f"{', '.join(sets)}); give --data the folder of one of them or their parent"
        )
    return _labelled(inside, str(split))
