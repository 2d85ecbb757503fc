"""Training config: defaults, dotted --set overrides, one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from medattn.errors import ConfigError, MedattnIOError
from medattn.training.config import Config, load_config, parse_override

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "samples" / "kvasir"
# the training configs (configs/ also holds other verbs' configs, e.g. pretrain_*.yaml)
TRAIN_CONFIGS = ["smoke", "bsanet_polyp", "grcsf_polyp", "unet_polyp", "attention_unet_polyp", "efen_cvc",
                 "unet_cvc", "attention_unet_cvc", "hlfnet_ph2", "unet_ph2", "attention_unet_ph2"]


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "exp.yaml"
    p.write_text(text)
    return p


def test_defaults_and_overrides(tmp_path: Path) -> None:
    p = _write(tmp_path, f"model: {{name: unet}}\ndata: {{root: {SAMPLES}}}\n")
    cfg = load_config(p, ["train.epochs=5", "data.input_size=176", "optim.lr=1e-3", "model.options.dropout=0.1",
                          "data.augment=[flip, {name: rotate, range: 30}]", "train.grad_clip=null"])
    assert cfg.name == "exp"
    assert cfg.train.epochs == 5 and cfg.data.input_size == (176, 176)
    assert cfg.optim.lr == pytest.approx(1e-3) and cfg.model.options == {"dropout": 0.1}
    assert cfg.data.augment == ["flip", {"name": "rotate", "range": 30}]
    assert cfg.data.root == [SAMPLES.resolve()]
    d = Config().dump()  # every section has visible defaults
    assert d["train"]["batch_size"] == 8 and d["loss"]["name"] == "bce_dice" and d["schedule"]["name"] == "none"
    assert d["inference"] == {"tta": False, "threshold": 0.5, "zoom": 1}


def test_parse_override_yaml_scalars() -> None:
    assert parse_override("a.b=5") == ("a.b", 5)
    assert parse_override("a=true") == ("a", True)
    assert parse_override("a=[1, 2]") == ("a", [1, 2])
    assert parse_override("a=") == ("a", None)
    with pytest.raises(ConfigError, match="expected key=value"):
        parse_override("train.epochs")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["model.name=unett"], "model.name: unknown model 'unett' (did you mean unet"),
        (["train.epochs=x"], "train.epochs: Input should be a valid integer"),
        (["data.root=/no/such/folder"], "data.root: /no/such/folder: no such folder"),
        (["train.epoch=3"], "train.epoch: unknown setting"),
        (["loss.name=dise"], "loss.name: unknown loss 'dise' (did you mean dice?)"),
        (["optim.name=rmsprop"], "optim.name: Input should be 'adam', 'adamw' or 'sgd'"),
        (["data.split.kind=kfold", "data.split.fold=5"], "fold 5 does not exist with k=5"),
        (["train.epochs.x=1"], "train.epochs: Input should be a valid integer"),
        (["inference.threshold=1.5"], "inference.threshold: Input should be less than or equal to 1"),
        (["inference.tta=maybe"], "inference.tta: Input should be a valid boolean"),
        (["inference.tt=true"], "inference.tt: unknown setting"),
        (["inference.zoom=0"], "inference.zoom: Input should be greater than or equal to 1"),
        (["inference.zoom=1.5"], "inference.zoom: Input should be a valid integer"),
    ],
)
def test_bad_config_is_one_clear_line(tmp_path: Path, overrides: list[str], message: str) -> None:
    p = _write(tmp_path, f"data: {{root: {SAMPLES}}}\n")
    with pytest.raises(ConfigError) as info:
        load_config(p, overrides)
    text = str(info.value)
    assert message in text and "\n" not in text
    assert text.startswith(("exp.yaml: ", "--set"))


def test_bad_files(tmp_path: Path) -> None:
    with pytest.raises(MedattnIOError, match="config file not found"):
        load_config(tmp_path / "missing.yaml")
    with pytest.raises(MedattnIOError, match="invalid YAML at line 3"):
        load_config(_write(tmp_path, "a: 1\nb: [\n"))
    with pytest.raises(MedattnIOError, match="mapping"):
        load_config(_write(tmp_path, "- 1\n- 2\n"))


def test_cli_error_lines(tmp_path: Path, run_cli) -> None:
    p = _write(tmp_path, f"data: {{root: {SAMPLES}}}\n")
    code, _, err = run_cli("train", p, "--set", "train.epochs=x", "--no-progress")
    assert code == 2 and err.startswith("error: exp.yaml: train.epochs:") and err.count("\n") == 1
    code, _, err = run_cli("train", p, "--set", "model.name=attention_unnet")
    assert code == 2 and "did you mean attention_unet" in err
    code, _, err = run_cli("train", "--resume", tmp_path)
    assert code == 2 and "not a run folder" in err


def test_shipped_configs_validate(monkeypatch) -> None:
    monkeypatch.chdir(REPO)
    names = [REPO / "configs" / f"{n}.yaml" for n in TRAIN_CONFIGS]
    data_here = (REPO.parent / "shared" / "data").is_dir()  # the configs point at ../shared/data
    for p in names:
        cfg = load_config(p, check_paths=data_here)
        assert yaml.safe_load(p.read_text())["model"]["name"] == cfg.model.name


def test_shipped_config_splits_on_real_data(shared_data: Path, monkeypatch) -> None:
    """The paper protocols resolve to the expected sample counts (names only, no decoding)."""
    from medattn.data import build_transforms
    from medattn.losses import build_loss
    from medattn.training.data import segmentation_split

    if not (REPO.parent / "shared" / "data").is_dir():
        pytest.skip("the shipped configs point at ../shared/data, which is elsewhere here")
    monkeypatch.chdir(REPO)
    expected = {"polyp": (1305, 145, 0), "cvc": (490, 61, 61), "ph2": (80, 20, 0)}
    for p in [REPO / "configs" / f"{n}.yaml" for n in TRAIN_CONFIGS if n != "smoke"]:
        protocol = p.stem.rsplit("_", 1)[1]
        cfg = load_config(p)
        parts = segmentation_split(cfg)
        test = sum(len(v) for k, v in parts.items() if k.startswith("test"))
        if protocol == "polyp":
            test -= 162  # the PraNet test lists: 100 Kvasir + 62 ClinicDB
        assert (len(parts["train"]), len(parts["val"]), test) == expected[protocol], p.name
        build_transforms(cfg.data.augment, cfg.data.input_size)
        build_loss(cfg.loss.name, **cfg.loss.options)


@pytest.mark.parametrize(("table", "rows"), [
    ("efen_table1", {"unet": "efen_unet", "reextract": "efen_reextract", "efen": "efen",
                     "efen_mobilenet_v2": "efen_mobilenet_v2", "unet_mobilenet_v2": "efen_mobilenet_v2",
                     "reextract_mobilenet_v2": "efen_mobilenet_v2"}),
    ("bsanet_table1", {"unet": "unet", "unetpp": "unetpp", "attention_unet": "attention_unet", "pranet": "pranet",
                       "efen": "efen_mobilenet_v2", "hlfnet": "hlfnet", "grcsf": "grcsf", "bsanet": "bsanet",
                       "bsanet_no_isam": "bsanet_no_isam", "bsanet_no_fsam": "bsanet_no_fsam",
                       "bsanet_no_arm": "bsanet_no_arm"}),
])
def test_paper_table_configs_share_one_budget(table: str, rows: dict[str, str]) -> None:
    """Each table's rows differ in `model` only (scripts/tables/*.sh run them at one budget)."""
    folder = REPO / "configs" / table
    assert sorted(p.stem for p in folder.glob("*.yaml")) == sorted(rows)
    budgets = []
    for stem, model in rows.items():
        cfg = load_config(folder / f"{stem}.yaml", check_paths=False)
        assert cfg.model.name == model
        d = cfg.dump()
        d.pop("model")
        d.pop("name", None)
        budgets.append(d)
    assert all(b == budgets[0] for b in budgets[1:])


def test_efen_mobilenet_v2_ablation_rows_switch_what_the_vgg_rows_switch() -> None:
    from medattn.models import model_info

    folder = REPO / "configs" / "efen_table1"
    for stem, vgg in (("unet", "efen_unet"), ("reextract", "efen_reextract"), ("efen", "efen")):
        options = load_config(folder / f"{stem}_mobilenet_v2.yaml", check_paths=False).model.options
        switches = {k: v for k, v in options.items() if k in ("reextract", "improved_skip")}
        assert switches == dict(model_info(vgg).default_options)


def test_efen_table_uses_the_committed_split_and_efen_augmentation() -> None:
    from medattn.data.transforms import EFEN_AUGMENT, build_transforms

    cfg = load_config(REPO / "configs" / "efen_table1" / "efen.yaml", check_paths=False)
    assert cfg.data.split.kind == "file" and cfg.data.split.file.name == "cvc_clinicdb_811_seed0.json"
    assert list(cfg.data.augment) == list(EFEN_AUGMENT)
    assert {"center_crop", "rotate", "transpose", "elastic"} <= set(EFEN_AUGMENT)  # the kinds the paper names
    assert cfg.loss.name == "bce_dice" and cfg.optim.name == "sgd" and cfg.train.batch_size == 8
    build_transforms(cfg.data.augment, cfg.data.input_size)
