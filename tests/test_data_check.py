"""check_dataset and the ``medattn datasets`` commands."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medattn.data import check_dataset, load_split


def _save(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


@pytest.fixture
def messy(tmp_path: Path) -> Path:
    """A paired folder with one of each problem check_dataset must find."""
    root = tmp_path / "messy"
    img = np.zeros((20, 30, 3), np.uint8)
    good = np.zeros((20, 30), np.uint8)
    good[5:10, 5:10] = 255
    soft = good.copy()
    soft[4, 5:10] = 100  # anti-aliased edge
    _save(root / "images" / "good.png", img)
    _save(root / "masks" / "good.png", good)
    _save(root / "images" / "soft.png", img)
    _save(root / "masks" / "soft.png", np.stack([soft] * 3, -1))  # stored as RGB
    _save(root / "images" / "empty.png", img)
    _save(root / "masks" / "empty.png", np.zeros((20, 30), np.uint8))
    _save(root / "images" / "labels01.png", img)
    _save(root / "masks" / "labels01.png", (good > 0).astype(np.uint8))
    _save(root / "images" / "small.png", np.zeros((10, 12, 3), np.uint8))
    _save(root / "masks" / "small.png", np.zeros((11, 12), np.uint8))
    _save(root / "images" / "lonely.png", img)
    _save(root / "masks" / "orphan.png", good)
    (root / "images" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    _save(root / "masks" / "broken.png", good)
    return root


def test_check_finds_every_problem(messy: Path) -> None:
    report = check_dataset(messy, progress=False, workers=2)
    assert report.layout == "paired"
    assert report.samples == 6 and report.labelled == 6
    assert [Path(p).name for p in report.unmatched_images] == ["lonely.png"]
    assert [Path(p).name for p in report.unmatched_masks] == ["orphan.png"]
    text = "\n".join(report.problems)
    assert "broken.png" in text
    assert "small.png: mask is 12x11 but image small.png is 12x10" in text
    assert "2 empty masks (no pixel > 127): empty, labels01" in text
    assert "0/1 labels" in text and "labels01" in text
    m = report.masks
    # good, soft, empty, labels01 decoded (broken/small stop early)
    assert m.files == 4
    assert m.values == [0, 1, 100, 255]
    assert m.binary == 2 and m.antialiased == 2  # empty (only 0) counts as binary; labels01 and soft do not
    assert m.colour_files == 1
    assert m.empty == 2  # labels01 is empty under the > 127 rule too
    assert m.non_binary_fraction == pytest.approx((5 + 25) / (4 * 600))
    assert report.height_range == (10, 20) and report.width_range == (12, 30)
    assert not report.ok


@pytest.mark.data
def test_check_real_ph2(shared_data: Path) -> None:
    report = check_dataset(shared_data / "ph2", progress=False)
    assert (report.layout, report.labelled, report.problems) == ("ph2", 100, [])
    assert report.masks.values == [0, 255] and report.masks.empty == 0
    assert report.height_range is not None and 500 < report.height_range[0] <= report.height_range[1] < 700


def test_cli_check_json_and_table(run_cli, messy: Path) -> None:
    code, out, err = run_cli("datasets", "check", messy, "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["samples"] == 6 and doc["ok"] is False and "> 127" in doc["mask_rule"]
    code, out, _ = run_cli("datasets", "check", messy)
    assert code == 0 and "paired" in out and "orphan.png" in out
    code, _, _ = run_cli("datasets", "check", messy, "--strict", "--json")
    assert code == 1


def test_cli_check_errors(run_cli, tmp_path: Path) -> None:
    code, _out, err = run_cli("datasets", "check", tmp_path / "nope")
    assert code == 2 and err.strip().startswith("error: ") and "no such folder" in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.data
def test_cli_check_real_counts(run_cli, shared_data: Path) -> None:
    expected = {
        "kvasir-seg": (1000, 0),
        "cvc-clinicdb": (612, 0),
        "ph2": (100, 0),
        "isic2017-unlabeled": (0, 2000),
    }
    for folder in ("cvc-clinicdb", "isic2017-unlabeled"):  # the two fast ones; the rest in test_data_layouts
        code, out, err = run_cli("datasets", "check", shared_data / folder, "--json")
        assert code == 0, err
        doc = json.loads(out)
        assert (doc["labelled"], doc["unlabeled"]) == expected[folder]
        assert doc["problems"] == []


def test_cli_split_ratio_and_kfold(run_cli, messy: Path, tmp_path: Path) -> None:
    out_file = tmp_path / "s" / "split.json"
    code, out, err = run_cli(
        "datasets", "split", messy, "--ratios", "5:1:1", "--seed", "2", "--out", out_file
    )
    assert code == 0, err
    assert "train 4, val 1, test 1" in out
    split = load_split(out_file)
    assert sorted(s.id for part in split.values() for s in part) == sorted(
        ["good", "soft", "empty", "labels01", "small", "broken"]
    )
    code, out, err = run_cli("datasets", "split", messy, "--kfold", "3", "--out", tmp_path / "k.json")
    assert code == 0, err
    assert [p.name for p in sorted(tmp_path.glob("k_fold*.json"))] == [
        "k_fold0.json",
        "k_fold1.json",
        "k_fold2.json",
    ]
    code, _, err = run_cli(
        "datasets", "split", messy, "--kfold", "3", "--ratios", "7:1:2", "--out", tmp_path / "x.json"
    )
    assert code == 2 and "exactly one" in err


@pytest.mark.data
def test_cli_split_pranet(run_cli, shared_data: Path, tmp_path: Path) -> None:
    out_file = tmp_path / "pranet.json"
    code, _out, err = run_cli(
        "datasets", "split", "--protocol", "pranet", "--data-root", shared_data, "--out", out_file
    )
    assert code == 0, err
    split = load_split(out_file)
    assert {k: len(v) for k, v in split.items()} == {"train": 1450, "test_kvasir": 100, "test_clinicdb": 62}
    assert all(s.image.is_file() for s in split["test_clinicdb"])


def test_cli_augmentations(run_cli) -> None:
    code, out, _ = run_cli("datasets", "augmentations")
    assert code == 0 and "color_jitter" in out and "elastic" in out
