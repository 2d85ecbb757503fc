"""Splits: PraNet protocol on the real data, seeded ratio / k-fold splits, JSON round trip."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medattn.data import Sample, kfold_split, load_split, pranet_split, ratio_split, save_split
from medattn.data.splits import parse_ratios
from medattn.errors import ConfigError, DatasetError, MedattnIOError


def _samples(n: int, root: Path = Path("/data/x")) -> list[Sample]:
    return [
        Sample(f"s{i:03d}", root / "images" / f"s{i:03d}.png", root / "masks" / f"s{i:03d}.png", "x")
        for i in range(n)
    ]


def _ids(part: list[Sample]) -> list[str]:
    return [s.id for s in part]


@pytest.mark.data
def test_pranet_split_counts_and_lists(shared_data: Path) -> None:
    split = pranet_split(shared_data)
    assert {k: len(v) for k, v in split.items()} == {"train": 1450, "test_kvasir": 100, "test_clinicdb": 62}
    train_keys = {(s.dataset, s.id) for s in split["train"]}
    assert sum(s.dataset == "kvasir-seg" for s in split["train"]) == 900
    assert sum(s.dataset == "cvc-clinicdb" for s in split["train"]) == 550
    for key, list_name in (("test_kvasir", "kvasir-seg"), ("test_clinicdb", "cvc-clinicdb")):
        test_keys = {(s.dataset, s.id) for s in split[key]}
        assert not (train_keys & test_keys)
        listed = (shared_data / "splits" / f"{list_name}_pranet_test.txt").read_text().split()
        assert sorted(s.image.name for s in split[key]) == sorted(listed)


def test_pranet_split_unknown_name(tmp_path: Path) -> None:
    from PIL import Image

    for name in ("kvasir-seg", "cvc-clinicdb"):
        for d in ("images", "masks"):
            (tmp_path / name / d).mkdir(parents=True)
            Image.new("L", (4, 4)).save(tmp_path / name / d / "1.png")
    (tmp_path / "splits").mkdir()
    (tmp_path / "splits" / "kvasir-seg_pranet_test.txt").write_text("1.png\n")
    (tmp_path / "splits" / "cvc-clinicdb_pranet_test.txt").write_text("99.png\n")
    with pytest.raises(DatasetError, match=r"'99.png' is not an image"):
        pranet_split(tmp_path)


@pytest.mark.parametrize(
    ("ratios", "sizes"), [((7, 1, 2), (70, 10, 20)), ((8, 1, 1), (80, 10, 10)), ((8, 2), (80, 20))]
)
def test_ratio_split_sizes_disjoint_complete(ratios: tuple[int, ...], sizes: tuple[int, ...]) -> None:
    samples = _samples(100)
    split = ratio_split(samples, ratios, seed=3)
    assert tuple(len(v) for v in split.values()) == sizes
    all_ids = [i for part in split.values() for i in _ids(part)]
    assert len(all_ids) == len(set(all_ids)) == 100
    assert set(all_ids) == set(_ids(samples))


def test_ratio_split_rounding_small() -> None:
    split = ratio_split(_samples(7), (7, 1, 2), seed=0)
    sizes = [len(v) for v in split.values()]
    assert sum(sizes) == 7 and min(sizes) >= 1


def test_ratio_split_reproducible_and_order_independent() -> None:
    samples = _samples(50)
    a = ratio_split(samples, seed=1)
    b = ratio_split(list(reversed(samples)), seed=1)
    c = ratio_split(samples, seed=2)
    assert {k: _ids(v) for k, v in a.items()} == {k: _ids(v) for k, v in b.items()}
    assert _ids(a["test"]) != _ids(c["test"])


def test_kfold_split() -> None:
    samples = _samples(23)
    folds = kfold_split(samples, k=5, seed=0)
    assert len(folds) == 5
    vals = [set(_ids(f["val"])) for f in folds]
    assert sorted(len(v) for v in vals) == [4, 4, 5, 5, 5]
    assert set().union(*vals) == set(_ids(samples))
    assert sum(len(v) for v in vals) == 23  # disjoint
    for f, v in zip(folds, vals, strict=True):
        assert set(_ids(f["train"])) == set(_ids(samples)) - v
    again = kfold_split(samples, k=5, seed=0)
    other = kfold_split(samples, k=5, seed=1)
    assert [_ids(f["val"]) for f in again] == [_ids(f["val"]) for f in folds]
    assert [_ids(f["val"]) for f in other] != [_ids(f["val"]) for f in folds]
    with pytest.raises(ConfigError):
        kfold_split(samples, k=1)


def test_duplicate_ids_refused() -> None:
    s = _samples(3)
    with pytest.raises(DatasetError, match="duplicate"):
        ratio_split([*s, s[0]])


def test_parse_ratios() -> None:
    assert parse_ratios("7:1:2") == (7.0, 1.0, 2.0)
    with pytest.raises(ConfigError):
        parse_ratios("7:x")
    with pytest.raises(ConfigError):
        parse_ratios("1")


def test_save_load_round_trip_and_relocation(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    samples = _samples(10, root)
    samples.append(
        Sample(
            "inst", root / "c" / "images" / "c.png", root / "c" / "m0.png", "dsb", (root / "c" / "m1.png",)
        )
    )
    split = ratio_split(samples, (8, 2), seed=0)
    out = save_split(tmp_path / "splits" / "s.json", split, meta={"seed": 0})
    doc = json.loads(out.read_text())
    assert doc["root"] == str(root.resolve()) and doc["meta"] == {"seed": 0}
    assert all(not Path(e["image"]).is_absolute() for e in doc["splits"]["train"])
    loaded = load_split(out)
    assert loaded == split
    moved = load_split(out, root=tmp_path / "elsewhere")
    assert moved["train"][0].image == tmp_path / "elsewhere" / Path(doc["splits"]["train"][0]["image"])


def test_load_split_errors(tmp_path: Path) -> None:
    with pytest.raises(MedattnIOError, match="not found"):
        load_split(tmp_path / "none.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{oops")
    with pytest.raises(MedattnIOError, match=r"bad\.json"):
        load_split(bad)
    other = tmp_path / "other.json"
    other.write_text('{"train": []}')
    with pytest.raises(MedattnIOError, match="not a medattn split file"):
        load_split(other)


def _presplit_samples(parts: dict[str, int]) -> list[Sample]:
    return [Sample(id=f"{p}/c{i}", image=Path(f"/d/{p}/images/c{i}.png"), mask=Path(f"/d/{p}/masks/c{i}.png"),
                   dataset="d") for p, n in parts.items() for i in range(n)]


def test_folder_split_val_folder_becomes_test_when_there_is_no_test() -> None:
    from medattn.data import folder_split

    parts = folder_split(_presplit_samples({"train": 20, "val": 5}), val_ratio=0.1, seed=0)
    assert {k: len(v) for k, v in parts.items()} == {"train": 18, "val": 2, "test": 5}
    assert all(s.id.startswith("val/") for s in parts["test"])
    assert all(s.id.startswith("train/") for s in parts["train"] + parts["val"])
    assert not {s.id for s in parts["train"]} & {s.id for s in parts["val"]}
    assert folder_split(_presplit_samples({"train": 20, "val": 5}), 0.1, seed=0) == parts
    # with a test folder the released val folder validates
    three = folder_split(_presplit_samples({"train": 4, "val": 2, "test": 3}))
    assert {k: len(v) for k, v in three.items()} == {"train": 4, "val": 2, "test": 3}
    with pytest.raises(DatasetError, match="unknown part"):
        folder_split(_presplit_samples({"train": 2, "extra": 1}))
    with pytest.raises(ConfigError, match="val_ratio"):
        folder_split(_presplit_samples({"train": 4, "val": 2}), val_ratio=0.0)


def test_relative_root_split_loads_from_any_working_folder(tmp_path: Path, monkeypatch) -> None:
    data = tmp_path / "shared" / "d"
    for part in ("images", "masks"):
        (data / part).mkdir(parents=True)
        (data / part / "a.png").write_bytes(b"x")
    split = {"train": [Sample("a", data / "images" / "a.png", data / "masks" / "a.png")]}
    target = save_split(tmp_path / "repo" / "configs" / "s.json", split, root=data, relative_root=True)
    assert json.loads(target.read_text())["root"] == "../../shared/d"
    monkeypatch.chdir(tmp_path / "shared")
    loaded = load_split(Path("../repo/configs/s.json"))
    assert loaded["train"][0].image == (data / "images" / "a.png").resolve()


@pytest.mark.data
def test_committed_splits_are_the_documented_protocols(shared_data: Path) -> None:
    """configs/splits: ISIC 2017 = folder_split(seed 0, 10 %), PH2 folds = kfold_split(k=5, seed 0)."""
    from medattn.data import discover, folder_split

    repo = Path(__file__).resolve().parents[1] / "configs" / "splits"
    isic = load_split(repo / "isic2017_seg.json", root=shared_data / "isic2017-seg")
    expected = folder_split(discover(shared_data / "isic2017-seg").samples, 0.1, seed=0)
    assert {k: [s.id for s in v] for k, v in isic.items()} == {k: [s.id for s in v] for k, v in expected.items()}
    assert {k: len(v) for k, v in isic.items()} == {"train": 1800, "val": 200, "test": 150}
    folds = kfold_split(discover(shared_data / "ph2").samples, 5, seed=0)
    for i, fold in enumerate(folds):
        got = load_split(repo / f"ph2_5fold_fold{i}.json", root=shared_data / "ph2" / "PH2 Dataset images")
        assert {k: [s.id for s in v] for k, v in got.items()} == {k: [s.id for s in v] for k, v in fold.items()}


def test_cli_split_folders_protocol(tmp_path: Path, run_cli) -> None:
    from PIL import Image

    data = tmp_path / "shared" / "isic"
    for part, n in (("train", 10), ("val", 3)):
        for sub in ("images", "masks"):
            (data / part / sub).mkdir(parents=True)
        for i in range(n):
            Image.new("RGB", (4, 4)).save(data / part / "images" / f"ISIC_{i:07d}.jpg")
            Image.new("L", (4, 4), 255).save(data / part / "masks" / f"ISIC_{i:07d}.png")
    out = tmp_path / "repo" / "split.json"
    code, text, _ = run_cli("datasets", "split", data, "--protocol", "folders", "--val-ratio", "0.2",
                            "--relative-root", "--out", out)
    assert code == 0 and "train 8, val 2, test 3" in text
    doc = json.loads(out.read_text())
    assert doc["root"] == "../shared/isic" and doc["meta"]["protocol"] == "folders"
    assert {k: len(v) for k, v in load_split(out).items()} == {"train": 8, "val": 2, "test": 3}
    code, _, err = run_cli("datasets", "split", "--protocol", "folders", "--out", out)
    assert code != 0 and "PATH" in err


# -- the committed EFEN split (configs/splits/cvc_clinicdb_811_seed0.json) ------------------------
EFEN_SPLIT = Path(__file__).resolve().parents[1] / "configs" / "splits" / "cvc_clinicdb_811_seed0.json"


@pytest.mark.data
def test_committed_efen_split_is_80_10_10_disjoint_and_complete(shared_data: Path) -> None:
    from medattn.data import discover

    doc = json.loads(EFEN_SPLIT.read_text())
    assert doc["meta"] == {"ratios": [8.0, 1.0, 1.0], "seed": 0, "source": "../shared/data/cvc-clinicdb"}
    parts = load_split(EFEN_SPLIT, root=shared_data / "cvc-clinicdb")
    ids = {k: _ids(v) for k, v in parts.items()}
    assert {k: len(v) for k, v in ids.items()} == {"train": 490, "val": 61, "test": 61}
    every = [i for v in ids.values() for i in v]
    assert len(set(every)) == len(every) == 612  # disjoint
    assert set(every) == {s.id for s in discover(shared_data / "cvc-clinicdb").samples}  # covers all 612
    assert all(s.image.is_file() and s.mask.is_file() for v in parts.values() for s in v)
    # the documented command (medattn datasets split ... --ratios 8:1:1 --seed 0) gives the same parts
    again = ratio_split(discover(shared_data / "cvc-clinicdb").samples, (8, 1, 1), seed=0)
    assert {k: _ids(v) for k, v in again.items()} == ids


def test_cli_split_relative_root(run_cli, tmp_path: Path) -> None:
    samples = Path(__file__).resolve().parents[1] / "samples" / "kvasir"
    out = tmp_path / "splits" / "k.json"
    code, _, err = run_cli("datasets", "split", str(samples), "--ratios", "4:1:1", "--relative-root", "--out", str(out))
    assert code == 0, err
    doc = json.loads(out.read_text())
    assert not Path(doc["root"]).is_absolute()
    assert (out.parent / doc["root"]).resolve() == samples.resolve()
    assert sum(len(v) for v in load_split(out).values()) == sum(doc["counts"].values())


def test_merge_gathers_parts_of_several_split_files(tmp_path: Path, run_cli) -> None:
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    save_split(a, {"train": _samples(4, tmp_path / "isic"), "test": _samples(2, tmp_path / "isic2")})
    save_split(b, {"train": _samples(3, tmp_path / "ph2"), "val": _samples(1, tmp_path / "ph2v")})
    out = tmp_path / "merged.json"
    code, text, err = run_cli("datasets", "merge", "--out", str(out), "--relative-root",
                              "--part", f"train={a}:train,{b}:train", "--part", f"test_isic={a}:test",
                              "--part", f"test_ph2={b}:val")
    assert code == 0, err
    assert f"wrote {out}: train 7, test_isic 2, test_ph2 1" in text
    merged = load_split(out)
    assert [s.image for s in merged["train"]] == [s.image for s in load_split(a)["train"] + load_split(b)["train"]]
    assert merged["test_ph2"][0].mask == tmp_path / "ph2v" / "masks" / "s000.png"
    assert json.loads(out.read_text())["meta"]["merged"]["test_isic"] == [f"{a}:test"]


def test_merge_refuses_a_test_image_in_training_and_bad_specs(tmp_path: Path, run_cli) -> None:
    from medattn.data.splits import merge_splits, parse_merge_part

    a = tmp_path / "a.json"
    save_split(a, {"train": _samples(3, tmp_path / "x"), "val": _samples(1, tmp_path / "x")})
    with pytest.raises(DatasetError, match="is in part 'train' and again in part 'test'"):
        merge_splits({"train": [(a, "train")], "test": [(a, "val")]})  # s000 is in both parts of a
    with pytest.raises(MedattnIOError, match="no part 'test' \\(it has train, val\\)"):
        merge_splits({"train": [(a, "test")]})
    assert parse_merge_part(f"train = {a}:train , {a}:val") == ("train", [(a, "train"), (a, "val")])
    for bad in ("train", f"={a}:train", f"train={a}", "train=:val"):
        with pytest.raises(ConfigError, match="--part"):
            parse_merge_part(bad)
    code, _, err = run_cli("datasets", "merge", "--out", str(tmp_path / "m.json"),
                           "--part", f"train={a}:train", "--part", f"train={a}:val")
    assert code != 0 and "--part train given twice" in err
