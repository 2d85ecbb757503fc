"""Layout discovery: the real datasets in ../shared/data and synthetic folders for the others."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medattn.data import LAYOUTS, detect_layout, discover, load_kvasir_boxes
from medattn.errors import DatasetError, MedattnIOError


def _img(path: Path, size: tuple[int, int] = (8, 6), value: int = 0, mode: str = "RGB") -> Path:
    """A small image file (w, h) = size; format from the extension."""
    path.parent.mkdir(parents=True, exist_ok=True)
    h, w = size[1], size[0]
    arr = np.full((h, w, 3) if mode == "RGB" else (h, w), value, np.uint8)
    Image.fromarray(arr).save(path)
    return path


# --------------------------------------------------------------------------- real data


@pytest.mark.data
@pytest.mark.parametrize(
    ("folder", "layout", "count", "labelled"),
    [
        ("kvasir-seg", "kvasir-seg", 1000, True),
        ("cvc-clinicdb", "cvc-clinicdb", 612, True),
        ("ph2", "ph2", 100, True),
        ("isic2017-unlabeled", "isic", 2000, False),
    ],
)
def test_real_datasets_counts(
    shared_data: Path, folder: str, layout: str, count: int, labelled: bool
) -> None:
    index = discover(shared_data / folder)
    assert index.layout == layout
    assert len(index) == count
    assert index.labelled is labelled
    assert index.unmatched_images == [] and index.unmatched_masks == []
    assert index.problems == []
    assert len({s.id for s in index.samples}) == count
    for s in index.samples[:20]:
        assert s.image.is_file() and s.image.is_absolute()
        if labelled:
            assert s.mask is not None and s.mask.is_file()
            # the pair shares its stem (PH2: IMDxxx / IMDxxx_lesion)
            assert s.mask.stem.startswith(s.image.stem)


@pytest.mark.data
def test_ph2_labels_and_case_structure(shared_data: Path) -> None:
    index = discover(shared_data / "ph2")
    ids = {s.id for s in index.samples}
    assert set(index.labels) == ids
    # independent count from the text file's second column (0/1/2 = common, atypical, melanoma)
    rows = (shared_data / "ph2" / "PH2_dataset.txt").read_text().splitlines()[1:]
    codes = [r.split("\t")[1] for r in rows if r.strip()]
    names = {"0": "common_nevus", "1": "atypical_nevus", "2": "melanoma"}
    for code, name in names.items():
        assert sum(v == name for v in index.labels.values()) == codes.count(code)
    s = index.samples[0]
    assert s.image.parent.name == f"{s.id}_Dermoscopic_Image"
    assert s.mask is not None and s.mask.parent.name == f"{s.id}_lesion"


@pytest.mark.data
def test_kvasir_boxes_structure(shared_data: Path) -> None:
    boxes = load_kvasir_boxes(shared_data / "kvasir-seg")
    index = discover(shared_data / "kvasir-seg")
    assert set(boxes) == {s.id for s in index.samples}
    first = boxes["cju0qkwl35piu0993l0dewei2"]
    assert first == [(38, 5, 430, 338)]
    with Image.open(index.samples[0].image) as im:
        w, h = im.size
    for xmin, ymin, xmax, ymax in boxes[index.samples[0].id]:
        assert 0 <= xmin < xmax <= w and 0 <= ymin < ymax <= h
    assert sum(len(v) for v in boxes.values()) > 1000  # some images hold several polyps


@pytest.mark.data
def test_folder_with_several_datasets_is_an_error(shared_data: Path) -> None:
    with pytest.raises(DatasetError) as err:
        discover(shared_data)
    msg = str(err.value)
    for name in ("kvasir-seg", "cvc-clinicdb", "ph2", "isic2017-unlabeled"):
        assert name in msg


# --------------------------------------------------------------------------- synthetic layouts


def test_cvc_official_tiff(tmp_path: Path) -> None:
    root = tmp_path / "CVC-ClinicDB"
    for i in (1, 2, 10):
        _img(root / "Original" / f"{i}.tif")
        _img(root / "Ground Truth" / f"{i}.tif", mode="L", value=255)
    _img(root / "Original" / "11.tif")  # no ground truth
    index = discover(root)
    assert index.layout == "cvc-clinicdb-official"
    assert [s.id for s in index.samples] == ["1", "2", "10"]  # natural order
    assert all(s.dataset == "cvc-clinicdb" for s in index.samples)
    assert [p.name for p in index.unmatched_images] == ["11.tif"]


def test_pranet_train_and_test(tmp_path: Path) -> None:
    train = tmp_path / "TrainDataset"
    for stem in ("1", "cju0abc"):
        _img(train / "image" / f"{stem}.png")
        _img(train / "mask" / f"{stem}.png", mode="L")
    index = discover(train)
    assert index.layout == "pranet-train" and len(index) == 2

    test = tmp_path / "TestDataset"
    for subset, stems in {
        "Kvasir": ["a", "b"],
        "CVC-300": ["a"],
        "ETIS-LaribPolypDB": ["x", "y", "z"],
    }.items():
        for stem in stems:
            _img(test / subset / "images" / f"{stem}.png")
            _img(test / subset / "masks" / f"{stem}.png", mode="L")
    _img(test / "Kvasir" / "masks" / "orphan.png", mode="L")
    index = discover(test)
    assert index.layout == "pranet-test"
    assert len(index) == 6
    assert {s.id for s in index.samples} >= {"Kvasir/a", "CVC-300/a", "ETIS-LaribPolypDB/z"}
    assert {s.dataset for s in index.samples} == {"Kvasir", "CVC-300", "ETIS-LaribPolypDB"}
    assert [p.name for p in index.unmatched_masks] == ["orphan.png"]
    # the parent of TrainDataset/ + TestDataset/ holds two datasets
    with pytest.raises(DatasetError, match="several datasets"):
        discover(tmp_path)


def test_isic_with_masks_in_separate_folders(tmp_path: Path) -> None:
    root = tmp_path / "isic2018"
    for n in ("0000000", "0000001", "0000002"):
        _img(root / "ISIC2018_Task1-2_Training_Input" / f"ISIC_{n}.jpg")
        _img(root / "ISIC2018_Task1-2_Training_Input" / f"ISIC_{n}_superpixels.png")
    for n in ("0000000", "0000001", "0000009"):
        _img(root / "ISIC2018_Task1_Training_GroundTruth" / f"ISIC_{n}_segmentation.png", mode="L")
    index = discover(root)
    assert index.layout == "isic"
    assert [s.id for s in index.samples] == ["ISIC_0000000", "ISIC_0000001"]
    assert [p.name for p in index.unmatched_images] == ["ISIC_0000002.jpg"]
    assert [p.name for p in index.unmatched_masks] == ["ISIC_0000009_segmentation.png"]


def test_dsb2018_instance_masks(tmp_path: Path) -> None:
    root = tmp_path / "stage1_train"
    for case, n_inst in (("aaa1", 3), ("bbb2", 1)):
        _img(root / case / "images" / f"{case}.png")
        for k in range(n_inst):
            _img(root / case / "masks" / f"m{k}.png", mode="L")
    index = discover(root)
    assert index.layout == "dsb2018"
    by_id = {s.id: s for s in index.samples}
    assert len(by_id["aaa1"].extra_masks) == 2 and by_id["aaa1"].mask is not None
    assert by_id["bbb2"].extra_masks == ()


def test_paired_folders_with_unmatched_and_suffixes(tmp_path: Path) -> None:
    root = tmp_path / "mydata"
    for stem in ("a", "b", "c"):
        _img(root / "imgs" / f"{stem}.jpg")
    _img(root / "gt" / "a_mask.png", mode="L")
    _img(root / "gt" / "b.png", mode="L")
    _img(root / "gt" / "z.png", mode="L")
    (root / "gt" / "notes.txt").write_text("not an image")
    index = discover(root)
    assert index.layout == "paired"
    assert [(s.id, s.mask.name) for s in index.samples if s.mask] == [("a", "a_mask.png"), ("b", "b.png")]
    assert [p.name for p in index.unmatched_images] == ["c.jpg"]
    assert [p.name for p in index.unmatched_masks] == ["z.png"]


def test_generic_images_masks_is_paired_not_cvc(tmp_path: Path) -> None:
    root = tmp_path / "polyps"
    _img(root / "images" / "frame_a.png")
    _img(root / "masks" / "frame_a.png", mode="L")
    assert detect_layout(root) == "paired"
    numeric = tmp_path / "numbers"
    _img(numeric / "images" / "3.png")
    _img(numeric / "masks" / "3.png", mode="L")
    assert detect_layout(numeric) == "cvc-clinicdb"


def test_duplicate_stems_are_reported(tmp_path: Path) -> None:
    root = tmp_path / "dup"
    _img(root / "images" / "a.png")
    _img(root / "images" / "a.jpg")
    _img(root / "masks" / "a.png", mode="L")
    index = discover(root, layout="paired")
    assert len(index) == 1
    assert any("duplicate image" in p for p in index.problems)


def test_unlabeled_folder_nested(tmp_path: Path) -> None:
    root = tmp_path / "raw"
    _img(root / "x.png")
    _img(root / "sub" / "x.png")
    _img(root / "sub" / "y.bmp")
    (root / ".hidden.png").write_bytes(b"")
    index = discover(root)
    assert index.layout == "unlabeled"
    assert [s.id for s in index.samples] == ["x", "sub/x", "sub/y"]
    assert not index.labelled


def test_forced_layout_and_errors(tmp_path: Path) -> None:
    root = tmp_path / "d"
    _img(root / "images" / "a.png")
    _img(root / "masks" / "a.png", mode="L")
    assert discover(root, layout="kvasir-seg").layout == "kvasir-seg"
    with pytest.raises(DatasetError, match=r"unknown layout 'nope'.*kvasir-seg"):
        discover(root, layout="nope")
    with pytest.raises(DatasetError, match="Original"):
        discover(root, layout="cvc-clinicdb-official")
    with pytest.raises(MedattnIOError, match="no such folder"):
        discover(tmp_path / "missing")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DatasetError, match="no images"):
        discover(empty)
    assert set(LAYOUTS) >= {"kvasir-seg", "ph2", "dsb2018", "unlabeled"}


def test_ph2_official_bmp_and_pipe_table(tmp_path: Path) -> None:
    root = tmp_path / "PH2Dataset"
    for name in ("IMD002", "IMD010"):
        case = root / "PH2 Dataset images" / name
        _img(case / f"{name}_Dermoscopic_Image" / f"{name}.bmp")
        _img(case / f"{name}_lesion" / f"{name}_lesion.bmp", mode="L", value=255)
    (root / "PH2_dataset.txt").write_text(
        "|| Name || Histological Diagnosis || Clinical Diagnosis || Asymmetry ||\n"
        "|| IMD002 ||  || 1 || 0 ||\n"
        "|| IMD010 || Melanoma || 2 || 2 ||\n"
    )
    index = discover(root)
    assert index.layout == "ph2"
    assert [s.id for s in index.samples] == ["IMD002", "IMD010"]
    assert index.labels == {"IMD002": "atypical_nevus", "IMD010": "melanoma"}


def _presplit(root: Path, parts: dict[str, int]) -> Path:
    for part, n in parts.items():
        for i in range(n):
            _img(root / part / "images" / f"ISIC_{i:07d}.jpg")
            _img(root / part / "masks" / f"ISIC_{i:07d}.png", mode="L", value=255)
    return root


def test_presplit_layout_train_val(tmp_path: Path) -> None:
    root = _presplit(tmp_path / "isic2017-seg", {"train": 3, "val": 2})
    assert detect_layout(root) == "presplit"
    index = discover(root)
    assert index.layout == "presplit" and len(index) == 5
    assert [s.id for s in index.samples] == ["train/ISIC_0000000", "train/ISIC_0000001", "train/ISIC_0000002",
                                             "val/ISIC_0000000", "val/ISIC_0000001"]
    assert {s.dataset for s in index.samples} == {"isic2017-seg"}
    assert all(s.mask.parent.name == "masks" and s.mask.parent.parent.name == s.id.split("/")[0]
               for s in index.samples)


def test_presplit_needs_part_folders(tmp_path: Path) -> None:
    (tmp_path / "x").mkdir()
    with pytest.raises(DatasetError, match="part folders"):
        discover(tmp_path / "x", layout="presplit")


@pytest.mark.data
def test_real_isic2017_seg(shared_data: Path) -> None:
    index = discover(shared_data / "isic2017-seg")
    assert index.layout == "presplit"
    assert len(index) == 2150 and index.problems == [] and not index.unmatched_images
    parts = {s.id.split("/")[0] for s in index.samples}
    assert parts == {"train", "val"}
    assert sum(s.id.startswith("val/") for s in index.samples) == 150
