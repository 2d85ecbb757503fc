"""Recognise the folder layouts of the public segmentation datasets.

:func:`discover` looks at file and folder *names* only (no image is opened),
so it is fast on any size of dataset. Each layout has one adapter function
returning a :class:`~medattn.data.types.DatasetIndex`:

==========================  =====================================================================
layout                      folder shape
==========================  =====================================================================
``kvasir-seg``              ``images/`` + ``masks/`` (+ ``kavsir_bboxes.json``)
``cvc-clinicdb``            ``images/`` + ``masks/`` (PNG release, numeric stems)
``cvc-clinicdb-official``   ``Original/`` + ``Ground Truth/`` (TIFF)
``pranet-train``            PraNet ``TrainDataset/`` with ``image/`` + ``mask/``
``pranet-test``             PraNet ``TestDataset/<subset>/{images,masks}/``; ids ``<subset>/<stem>``
``ph2``                     ``PH2 Dataset images/IMDxxx/IMDxxx_Dermoscopic_Image/IMDxxx.bmp|png``
``isic``                    ``ISIC_*.jpg`` + ``ISIC_*_segmentation.png`` (masks optional)
``dsb2018``                 ``<id>/images/<id>.png`` + ``<id>/masks/*.png`` (instances, merged)
``presplit``                ``train/``, ``val/`` (and/or ``test/``), each ``images/`` + ``masks/``; ids ``<part>/<stem>``
``paired``                  any image folder + mask folder, matched by file stem
``unlabeled``               any folder of images without masks
==========================  =====================================================================

Masks are binary by the rule *foreground = value > 127* (gray value after a
colour mask is converted to luminance), the rule of the PraNet evaluation
toolbox.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from pathlib import Path

from medattn.data.types import DatasetIndex, Sample
from medattn.errors import DatasetError, MedattnIOError

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif"})

LAYOUTS = (
    "kvasir-seg",
    "cvc-clinicdb",
    "cvc-clinicdb-official",
    "pranet-train",
    "pranet-test",
    "ph2",
    "isic",
    "dsb2018",
    "presplit",
    "paired",
    "unlabeled",
)

# Part folder names of a dataset released already split (ISIC 2017 segmentation: train/ + val/).
PRESPLIT_PARTS = frozenset({"train", "training", "val", "valid", "validation", "test", "testing"})

# Subset folder names of the PraNet TestDataset release.
PRANET_TEST_SUBSETS = frozenset({"cvc-300", "cvc-clinicdb", "cvc-colondb", "etis-laribpolypdb", "kvasir"})

_IMAGE_DIR_NAMES = ("images", "image", "imgs", "img", "original", "input", "inputs", "x")
_MASK_DIR_NAMES = (
    "masks",
    "mask",
    "ground truth",
    "groundtruth",
    "ground_truth",
    "gt",
    "gts",
    "labels",
    "label",
    "annotations",
    "segmentations",
    "y",
)
# Suffixes a mask file's stem may carry beyond its image's stem.
_MASK_STEM_SUFFIXES = ("_segmentation", "_mask", "_masks", "_lesion", "_gt", "_label", "-mask", "_seg")


def _is_image(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


def _images_in(folder: Path) -> list[Path]:
    """Image files directly inside ``folder``, sorted by name."""
    return sorted(p for p in folder.iterdir() if _is_image(p))


def _natural_key(text: str) -> tuple:
    """Sort ``2`` before ``10``."""
    return tuple(int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", text))


def _child(root: Path, *names: str) -> Path | None:
    """First sub-folder of ``root`` whose name matches one of ``names`` (case-insensitive)."""
    by_lower = {p.name.lower(): p for p in root.iterdir() if p.is_dir()}
    for name in names:
        if name in by_lower:
            return by_lower[name]
    return None


def _mask_key(stem: str) -> str:
    low = stem.lower()
    for suffix in _MASK_STEM_SUFFIXES:
        if low.endswith(suffix) and len(low) > len(suffix):
            return stem[: -len(suffix)]
    return stem


def pair_by_stem(
    images: Iterable[Path],
    masks: Iterable[Path],
    dataset: str,
    id_prefix: str = "",
) -> tuple[list[Sample], list[Path], list[Path], list[str]]:
    """Match images to masks by file stem (a mask stem may end in ``_mask``, ``_segmentation`` ...).

    Returns ``(samples, unmatched_images, unmatched_masks, problems)``; duplicate
    stems (``a.png`` and ``a.jpg``) are reported as problems and the first file is kept.
    """
    problems: list[str] = []
    by_stem: dict[str, Path] = {}
    for m in masks:
        key = _mask_key(m.stem)
        if key in by_stem:
            problems.append(f"{m}: duplicate mask for '{key}' (kept {by_stem[key].name})")
            continue
        by_stem[key] = m
    samples: list[Sample] = []
    unmatched_images: list[Path] = []
    seen: dict[str, Path] = {}
    for img in images:
        if img.stem in seen:
            problems.append(f"{img}: duplicate image for '{img.stem}' (kept {seen[img.stem].name})")
            continue
        seen[img.stem] = img
        mask = by_stem.pop(img.stem, None)
        if mask is None:
            unmatched_images.append(img)
        else:
            samples.append(Sample(id=id_prefix + img.stem, image=img, mask=mask, dataset=dataset))
    samples.sort(key=lambda s: _natural_key(s.id))
    return samples, unmatched_images, sorted(by_stem.values()), problems


def _paired_index(root: Path, image_dir: Path, mask_dir: Path, layout: str, dataset: str) -> DatasetIndex:
    samples, ui, um, problems = pair_by_stem(_images_in(image_dir), _images_in(mask_dir), dataset)
    return DatasetIndex(root, layout, samples, ui, um, problems)


# --------------------------------------------------------------------------- adapters


def _images_masks(root: Path) -> tuple[Path, Path]:
    image_dir, mask_dir = _child(root, "images"), _child(root, "masks")
    if image_dir is None or mask_dir is None:
        raise DatasetError(f"{root}: expected 'images/' and 'masks/' folders")
    return image_dir, mask_dir


def load_kvasir_seg(root: Path) -> DatasetIndex:
    """Kvasir-SEG: ``images/*.jpg`` + ``masks/*.jpg`` (+ ``kavsir_bboxes.json``)."""
    image_dir, mask_dir = _images_masks(root)
    index = _paired_index(root, image_dir, mask_dir, "kvasir-seg", "kvasir-seg")
    boxes_file = root / "kavsir_bboxes.json"
    if boxes_file.is_file():
        try:
            boxes = load_kvasir_boxes(root)
        except MedattnIOError as exc:
            index.problems.append(str(exc))
        else:
            missing = [s.id for s in index.samples if s.id not in boxes]
            if missing:
                index.problems.append(f"{boxes_file}: no boxes for {len(missing)} images (e.g. {missing[0]})")
    return index


def load_kvasir_boxes(root: str | Path) -> dict[str, list[tuple[int, int, int, int]]]:
    """Polyp boxes of Kvasir-SEG from ``kavsir_bboxes.json`` as ``{id: [(xmin, ymin, xmax, ymax), ...]}``.

    The file maps each image stem to ``{"height", "width", "bbox": [{"label", "xmin", "ymin",
    "xmax", "ymax"}, ...]}``; pixel coordinates of the original image.
    """
    root = Path(root)
    path = root / "kavsir_bboxes.json" if root.is_dir() else root
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise MedattnIOError(path, "file not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MedattnIOError(path, f"not a readable JSON file ({exc})") from None
    if not isinstance(raw, dict):
        raise MedattnIOError(path, "expected a JSON object mapping image ids to boxes")
    out: dict[str, list[tuple[int, int, int, int]]] = {}
    for key, entry in raw.items():
        try:
            out[key] = [
                (int(b["xmin"]), int(b["ymin"]), int(b["xmax"]), int(b["ymax"])) for b in entry["bbox"]
            ]
        except (KeyError, TypeError, ValueError):
            raise MedattnIOError(path, f"entry '{key}' has no valid 'bbox' list") from None
    return out


def load_cvc_clinicdb(root: Path) -> DatasetIndex:
    """CVC-ClinicDB PNG release: ``images/<n>.png`` + ``masks/<n>.png``."""
    image_dir, mask_dir = _images_masks(root)
    return _paired_index(root, image_dir, mask_dir, "cvc-clinicdb", "cvc-clinicdb")


def load_cvc_clinicdb_official(root: Path) -> DatasetIndex:
    """CVC-ClinicDB official release: ``Original/<n>.tif`` + ``Ground Truth/<n>.tif``."""
    image_dir = _child(root, "original")
    mask_dir = _child(root, "ground truth", "groundtruth", "ground_truth")
    if image_dir is None or mask_dir is None:
        raise DatasetError(f"{root}: expected 'Original/' and 'Ground Truth/' folders")
    return _paired_index(root, image_dir, mask_dir, "cvc-clinicdb-official", "cvc-clinicdb")


def load_pranet_train(root: Path) -> DatasetIndex:
    """PraNet ``TrainDataset/``: ``image/*.png`` + ``mask/*.png`` (900 Kvasir + 550 ClinicDB)."""
    if _child(root, "image") is None and _child(root, "traindataset") is not None:
        root = _child(root, "traindataset")  # type: ignore[assignment]
    image_dir, mask_dir = _child(root, "image", "images"), _child(root, "mask", "masks")
    if image_dir is None or mask_dir is None:
        raise DatasetError(f"{root}: expected 'image/' and 'mask/' folders (PraNet TrainDataset)")
    return _paired_index(root, image_dir, mask_dir, "pranet-train", "pranet-train")


def _subset_dirs(root: Path) -> list[Path]:
    """Sub-folders holding ``images/`` + ``masks/``."""
    out = []
    for sub in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if _child(sub, "images") is not None and _child(sub, "masks") is not None:
            out.append(sub)
    return out


def load_pranet_test(root: Path) -> DatasetIndex:
    """PraNet ``TestDataset/<subset>/{images,masks}``: ids ``<subset>/<stem>``, dataset = subset name."""
    if not _subset_dirs(root) and _child(root, "testdataset") is not None:
        root = _child(root, "testdataset")  # type: ignore[assignment]
    subsets = _subset_dirs(root)
    if not subsets:
        raise DatasetError(
            f"{root}: expected sub-folders '<subset>/images' + '<subset>/masks' (PraNet TestDataset)"
        )
    index = DatasetIndex(root, "pranet-test")
    for sub in subsets:
        image_dir, mask_dir = _images_masks(sub)
        samples, ui, um, problems = pair_by_stem(
            _images_in(image_dir), _images_in(mask_dir), sub.name, id_prefix=f"{sub.name}/"
        )
        index.samples += samples
        index.unmatched_images += ui
        index.unmatched_masks += um
        index.problems += problems
    return index


def _ph2_images_dir(root: Path) -> Path | None:
    for cand in (root, root / "PH2Dataset", root / "PH2 Dataset"):
        if not cand.is_dir():
            continue
        inner = _child(cand, "ph2 dataset images")
        if inner is not None:
            return inner
    if any(p.is_dir() and re.fullmatch(r"IMD\d+", p.name) for p in root.iterdir()):
        return root
    return None


def read_ph2_labels(path: Path) -> dict[str, str]:
    """Clinical diagnosis per case from ``PH2_dataset.txt``.

    Accepts the official ``||``-separated table and the tab-separated variant; codes are
    0 common nevus, 1 atypical nevus, 2 melanoma (PH2 readme), returned as those names.
    """
    names = {"0": "common_nevus", "1": "atypical_nevus", "2": "melanoma"}
    text = path.read_text(encoding="utf-8", errors="replace")
    rows = []
    for line in text.splitlines():
        if "||" in line:
            # keep empty inner cells (blank histological diagnosis) so columns stay aligned
            cells = [c.strip() for c in line.strip().strip("|").split("||")]
        else:
            cells = [c.strip() for c in line.split("\t")]
        if any(cells):
            rows.append(cells)
    header = next((r for r in rows if any("clinical diagnosis" in c.lower() for c in r)), None)
    if header is None:
        return {}
    col = next(i for i, c in enumerate(header) if "clinical diagnosis" in c.lower())
    labels = {}
    for row in rows:
        if row and re.fullmatch(r"IMD\d+", row[0]) and len(row) > col and row[col] in names:
            labels[row[0]] = names[row[col]]
    return labels


def load_ph2(root: Path) -> DatasetIndex:
    """PH2: ``PH2 Dataset images/IMDxxx/IMDxxx_Dermoscopic_Image/IMDxxx.(bmp|png)`` + ``IMDxxx_lesion/``.

    When ``PH2_dataset.txt`` is present its clinical diagnoses fill ``index.labels``.
    """
    images_dir = _ph2_images_dir(root)
    if images_dir is None:
        raise DatasetError(f"{root}: expected a 'PH2 Dataset images/' folder of IMDxxx cases")
    index = DatasetIndex(root, "ph2")
    for case in sorted(p for p in images_dir.iterdir() if p.is_dir() and re.fullmatch(r"IMD\d+", p.name)):
        name = case.name
        img_dir, les_dir = case / f"{name}_Dermoscopic_Image", case / f"{name}_lesion"
        imgs = _images_in(img_dir) if img_dir.is_dir() else []
        masks = _images_in(les_dir) if les_dir.is_dir() else []
        img = next((p for p in imgs if p.stem == name), imgs[0] if imgs else None)
        mask = next((p for p in masks if p.stem == f"{name}_lesion"), masks[0] if masks else None)
        if img is None:
            if mask is not None:
                index.unmatched_masks.append(mask)
            index.problems.append(f"{case}: no dermoscopic image")
        elif mask is None:
            index.unmatched_images.append(img)
        else:
            index.samples.append(Sample(id=name, image=img, mask=mask, dataset="ph2"))
    for txt in (root / "PH2_dataset.txt", images_dir.parent / "PH2_dataset.txt"):
        if txt.is_file():
            index.labels = read_ph2_labels(txt)
            break
    return index


_ISIC_IMAGE = re.compile(r"ISIC_\d+", re.IGNORECASE)
_ISIC_MASK = re.compile(r"(ISIC_\d+)_segmentation", re.IGNORECASE)


def _walk_images(root: Path, max_depth: int) -> list[Path]:
    out: list[Path] = []
    level = [root]
    for _ in range(max_depth + 1):
        nxt = []
        for folder in level:
            for p in sorted(folder.iterdir()):
                if p.name.startswith("."):
                    continue
                if p.is_dir():
                    nxt.append(p)
                elif _is_image(p):
                    out.append(p)
        level = nxt
    return out


def load_isic(root: Path) -> DatasetIndex:
    """ISIC challenge: ``ISIC_<n>.jpg`` + ``ISIC_<n>_segmentation.png`` (same or separate folders).

    Superpixel files (``*_superpixels.png``) are ignored. Without any mask the images are
    returned unlabeled (``mask=None``), e.g. the ISIC 2017 training images alone.
    """
    images, masks = [], []
    for p in _walk_images(root, max_depth=2):
        if _ISIC_MASK.fullmatch(p.stem):
            masks.append(p)
        elif _ISIC_IMAGE.fullmatch(p.stem):
            images.append(p)
    if not images:
        raise DatasetError(f"{root}: no ISIC_<number> images found")
    if not masks:
        samples = [Sample(id=p.stem, image=p, dataset="isic") for p in images]
        return DatasetIndex(root, "isic", samples)
    samples, ui, um, problems = pair_by_stem(images, masks, "isic")
    return DatasetIndex(root, "isic", samples, ui, um, problems)


def load_presplit(root: Path) -> DatasetIndex:
    """A dataset released already split: ``<part>/images`` + ``<part>/masks`` for parts such as
    ``train``, ``val``, ``test``; ids ``<part>/<stem>`` (``part_of(sample)`` gives the part),
    ``Sample.dataset`` = the root folder's name.

    ``../shared/data/isic2017-seg`` is one: the 2000 ISIC 2017 training and 150 validation pairs.
    """
    parts = [sub for sub in _subset_dirs(root) if sub.name.lower() in PRESPLIT_PARTS]
    if not parts:
        raise DatasetError(f"{root}: expected part folders ({', '.join(sorted(PRESPLIT_PARTS))}) "
                           "each holding 'images/' and 'masks/'")
    index = DatasetIndex(root, "presplit")
    for sub in parts:
        image_dir, mask_dir = _images_masks(sub)
        samples, ui, um, problems = pair_by_stem(
            _images_in(image_dir), _images_in(mask_dir), root.name, id_prefix=f"{sub.name}/"
        )
        index.samples += samples
        index.unmatched_images += ui
        index.unmatched_masks += um
        index.problems += problems
    return index


def part_of(sample: Sample) -> str:
    """The part folder (``train``, ``val`` ...) of a :func:`load_presplit` sample id."""
    part, sep, _ = sample.id.partition("/")
    if not sep:
        raise DatasetError(f"sample id '{sample.id}' has no '<part>/' prefix (not a presplit dataset)")
    return part


def _dsb_cases(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and (p / "images" / f"{p.name}.png").is_file())


def load_dsb2018(root: Path) -> DatasetIndex:
    """Data Science Bowl 2018 stage1: ``<id>/images/<id>.png`` + ``<id>/masks/*.png`` (one per nucleus).

    The instance masks of a case are merged into one binary mask: ``Sample.mask`` is the first
    instance and ``Sample.extra_masks`` the others (read with :func:`medattn.data.read_sample_mask`).
    Cases without masks (stage1_test) become unlabeled samples.
    """
    index = DatasetIndex(root, "dsb2018")
    for case in _dsb_cases(root):
        image = case / "images" / f"{case.name}.png"
        masks = _images_in(case / "masks") if (case / "masks").is_dir() else []
        if masks:
            index.samples.append(
                Sample(case.name, image, mask=masks[0], dataset="dsb2018", extra_masks=tuple(masks[1:]))
            )
        else:
            index.samples.append(Sample(case.name, image, dataset="dsb2018"))
    if not index.samples:
        raise DatasetError(f"{root}: expected '<id>/images/<id>.png' case folders (DSB2018)")
    return index


def _generic_dirs(root: Path) -> tuple[Path, Path] | None:
    image_dir = _child(root, *_IMAGE_DIR_NAMES)
    mask_dir = _child(root, *_MASK_DIR_NAMES)
    if image_dir is None or mask_dir is None or image_dir == mask_dir:
        return None
    return image_dir, mask_dir


def load_paired(root: Path) -> DatasetIndex:
    """Any image folder (``images``, ``img``, ``original`` ...) + mask folder (``masks``, ``gt``, ``labels`` ...)."""
    dirs = _generic_dirs(root)
    if dirs is None:
        raise DatasetError(
            f"{root}: expected an image folder ({', '.join(_IMAGE_DIR_NAMES)}) and a mask folder "
            f"({', '.join(_MASK_DIR_NAMES)})"
        )
    return _paired_index(root, dirs[0], dirs[1], "paired", root.name)


def load_unlabeled(root: Path) -> DatasetIndex:
    """Every image under ``root`` (up to 3 folder levels); ids are relative paths without suffix."""
    images = _walk_images(root, max_depth=3)
    if not images:
        raise DatasetError(f"{root}: no images found (looked for {', '.join(sorted(IMAGE_SUFFIXES))})")
    index = DatasetIndex(root, "unlabeled")
    seen: dict[str, Path] = {}
    for p in images:
        rid = p.relative_to(root).with_suffix("").as_posix()
        if rid in seen:
            index.problems.append(f"{p}: same name as {seen[rid].name}; skipped")
            continue
        seen[rid] = p
        index.samples.append(Sample(id=rid, image=p, dataset=root.name))
    return index


ADAPTERS: dict[str, Callable[[Path], DatasetIndex]] = {
    "kvasir-seg": load_kvasir_seg,
    "cvc-clinicdb": load_cvc_clinicdb,
    "cvc-clinicdb-official": load_cvc_clinicdb_official,
    "pranet-train": load_pranet_train,
    "pranet-test": load_pranet_test,
    "ph2": load_ph2,
    "isic": load_isic,
    "dsb2018": load_dsb2018,
    "presplit": load_presplit,
    "paired": load_paired,
    "unlabeled": load_unlabeled,
}


# --------------------------------------------------------------------------- detection


def _numeric_stems(folder: Path) -> bool:
    stems = [p.stem for p in _images_in(folder)]
    return bool(stems) and all(s.isdigit() for s in stems)


def detect_layout(root: str | Path) -> str | None:
    """Name of the layout of ``root`` judged from names alone, or ``None`` when none applies.

    A folder holding several datasets (other than a PraNet ``TestDataset``) gives ``None``;
    :func:`discover` then lists them.
    """
    root = Path(root)
    name = root.name.lower()
    paired = bool(_child(root, "images") and _child(root, "masks"))
    if paired and ((root / "kavsir_bboxes.json").is_file() or "kvasir" in name):
        return "kvasir-seg"
    if _child(root, "original") and _child(root, "ground truth", "groundtruth", "ground_truth"):
        return "cvc-clinicdb-official"
    if name == "traindataset" or (_child(root, "image") and _child(root, "mask")):
        return "pranet-train"
    if _child(root, "images") and _child(root, "masks"):
        images = _child(root, "images")
        if re.search(r"cvc|clinic", name) or (images is not None and _numeric_stems(images)):
            return "cvc-clinicdb"
        return "paired"
    if _ph2_images_dir(root) is not None:
        return "ph2"
    if _dsb_cases(root):
        return "dsb2018"
    subsets = _subset_dirs(root)
    if subsets and all(s.name.lower() in PRESPLIT_PARTS for s in subsets):
        return "presplit"
    if subsets and (name == "testdataset" or all(s.name.lower() in PRANET_TEST_SUBSETS for s in subsets)):
        return "pranet-test"
    if _child(root, "traindataset") and not _child(root, "testdataset"):
        return "pranet-train"
    if _child(root, "testdataset") and not _child(root, "traindataset"):
        return "pranet-test"
    if _generic_dirs(root) is not None:
        return "paired"
    # Depth 1 covers the official releases (images in a sub-folder) without
    # mistaking a folder of several datasets for one ISIC set.
    if any(_ISIC_IMAGE.fullmatch(p.stem) for p in _walk_images(root, max_depth=1)):
        return "isic"
    return None


def _recognised_children(root: Path) -> list[tuple[Path, str]]:
    out = []
    for sub in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        layout = detect_layout(sub)
        if layout is not None:
            out.append((sub, layout))
    return out


def discover(path: str | Path, layout: str | None = None) -> DatasetIndex:
    """Find the samples of the dataset in ``path``; auto-detect the layout unless ``layout`` is given.

    One dataset per call: a folder holding several recognised datasets raises a
    :class:`~medattn.errors.DatasetError` that lists them.

    >>> index = discover("../shared/data/kvasir-seg")  # doctest: +SKIP
    >>> index.layout, len(index)  # doctest: +SKIP
    ('kvasir-seg', 1000)
    """
    # Absolute paths: an index (and a split saved from it) does not depend on the working folder.
    root = Path(path).expanduser().resolve()
    if not root.exists():
        raise MedattnIOError(root, "no such folder")
    if not root.is_dir():
        raise MedattnIOError(root, "not a folder (give the dataset's root folder)")
    if layout is not None:
        key = layout.lower()
        if key not in ADAPTERS:
            raise DatasetError(f"unknown layout '{layout}'; known layouts: {', '.join(LAYOUTS)}")
        return ADAPTERS[key](root)
    found = detect_layout(root)
    if found is not None:
        return ADAPTERS[found](root)
    children = _recognised_children(root)
    if len(children) > 1:
        listing = ", ".join(f"{p.name} ({lay})" for p, lay in children)
        raise DatasetError(f"{root}: holds several datasets: {listing}; give one of them")
    if len(children) == 1 and not _images_in(root):
        return ADAPTERS[children[0][1]](children[0][0])
    return load_unlabeled(root)
