"""benchmarks/paper_tables.py: the table writer of scripts/tables/{efen,bsanet}-table1.sh (no training)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tables():
    sys.path.insert(0, str(REPO / "benchmarks"))
    spec = importlib.util.spec_from_file_location("paper_tables", REPO / "benchmarks" / "paper_tables.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _row(label: str, dice: float, epochs: int = 3, parts=("test",)) -> dict:
    metrics = {"count": 4, "dice": dice, "iou": dice / (2 - dice), "recall": 0.5, "precision": 0.25,
               "meanDice": dice, "meanIoU": 0.4, "Sm": 0.5, "wFm": 0.3, "meanEm": 0.6, "MAE": 0.1}
    return {"label": label, "parts": {p: dict(metrics) for p in parts}, "params": 2_500_000, "gmacs": 1.25,
            "cpu_images_per_s": 12.0,
            "budget": {"input_size": [32, 32], "epochs": epochs, "batch_size": 2, "optim": {"name": "sgd"},
                       "train_seconds": 120.0}}


def test_budget_mismatch_is_reported(tables) -> None:
    assert tables.budget_mismatches([_row("a", 0.5), _row("b", 0.6)]) == []
    assert tables.budget_mismatches([_row("a", 0.5), _row("b", 0.6, epochs=4)]) == ["epochs"]


def test_efen_markdown_has_ours_in_percent_and_the_papers_rows(tables) -> None:
    md = tables.efen_markdown([_row("EFEN", 0.5)], {"note": "budget"})
    assert "| EFEN | 50.00 | 33.33 | 50.00 | 25.00 | 2.50 | 1.25 | 12.0 | 3 | 2 min |" in md
    for label, p in tables.EFEN_PAPER.items():
        assert f"| {label}, reported" in md and f"{p['dice']:.2f}" in md
    assert "87.81" in md and "93.04" in md


def test_bsanet_markdown_has_both_test_sets_and_the_six_columns(tables) -> None:
    md = tables.bsanet_markdown([_row("BSANet", 0.7, parts=("test_kvasir", "test_clinicdb"))], {"note": "b"})
    assert "## Kvasir (4 images)" in md and "## ClinicDB (4 images)" in md
    assert "| model | meanDice | meanIoU | Sm | wFm | meanEm | MAE |" in md
    assert md.count("| BSANet | 0.700 | 0.400 | 0.500 | 0.300 | 0.600 | 0.100 |") == 2
    assert "| BSANet, reported (paper 000" in md and "0.901" in md  # the paper's rows under Kvasir only
    assert md.index("reported") < md.index("## ClinicDB")


def test_run_experiments_names_the_three_tables() -> None:
    import subprocess

    out = subprocess.run(["bash", str(REPO / "scripts" / "run_experiments.sh"), "list"], capture_output=True,
                         text=True, timeout=30, check=True).stdout.split()
    assert {"efen-table1", "bsanet-table1", "cawe-froc", "skin-recipe"} <= set(out) and "_common" not in out
    bad = subprocess.run(["bash", str(REPO / "scripts" / "run_experiments.sh"), "no-such-table"],
                         capture_output=True, text=True, timeout=30)
    assert bad.returncode == 2 and "no table 'no-such-table'" in bad.stderr


@pytest.mark.parametrize("table", ["efen-table1", "bsanet-table1", "cawe-froc", "skin-recipe"])
def test_table_scripts_parse_and_name_their_configs(table: str) -> None:
    import re
    import subprocess

    script = REPO / "scripts" / "tables" / f"{table}.sh"
    subprocess.run(["bash", "-n", str(script)], check=True, timeout=30)
    text = script.read_text()
    assert 'source "$(dirname "${BASH_SOURCE[0]}")/_common.sh"' in text and 'SMOKE" = 1' in text
    folder = {"efen-table1": "efen_table1", "bsanet-table1": "bsanet_table1"}.get(table)
    if folder:  # every row the script trains has its config, and every config is a row
        rows = re.search(r"^ROWS=\(([^)]*)\)", text, re.M).group(1).split()
        assert sorted(rows) == sorted(p.stem for p in (REPO / "configs" / folder).glob("*.yaml"))


def test_checks_state_the_efen_ordering(tables) -> None:
    rows = [_row("U-Net (baseline)", 0.60), _row("U-Net + Process1", 0.70), _row("EFEN", 0.65)]
    found = tables.checks("efen-table1", rows)
    assert found[0].startswith("yes: U-Net + Process1 improves DSC over U-Net (baseline) (60.00 -> 70.00)")
    assert found[1].startswith("no: EFEN does not improve DSC over U-Net + Process1")
    assert len(found) == 2
    # the same ablation on the ImageNet MobileNetV2 is checked on its own, never across encoders
    rows += [_row("U-Net (MobileNetV2, ImageNet)", 0.75), _row("EFEN (MobileNetV2, ImageNet)", 0.78)]
    found = tables.checks("efen-table1", rows)
    assert found[2:] == ["yes: EFEN (MobileNetV2, ImageNet) improves DSC over U-Net (MobileNetV2, ImageNet) "
                         "(75.00 -> 78.00)"]


def test_checks_rank_bsanet_and_its_modules(tables) -> None:
    parts = ("test_kvasir", "test_clinicdb")
    rows = [_row("U-Net", 0.80, parts=parts), _row("BSANet", 0.795, parts=parts),
            _row("BSANet w/o ISAM", 0.70, parts=parts), _row("BSANet w/o ARM", 0.81, parts=parts)]
    rows[3]["parts"]["test_clinicdb"]["meanDice"] = 0.80  # within 0.01 of the best counts as reaching the target
    rows[1]["parts"]["test_kvasir"]["dice"] = 0.9  # the p > 0.5 Dice is ranked too, for information
    found = tables.checks("bsanet-table1", rows)
    assert found[0] == "no: on Kvasir BSANet ranks 3 of 4 by meanDice (0.015 behind BSANet w/o ARM)"
    assert found[1] == "(info): on Kvasir BSANet ranks 1 of 4 by Dice at p > 0.5 (first)"
    assert "yes: on Kvasir ISAM helps (meanDice +0.095 with it)" in found
    assert "no: on Kvasir ARM does not help (meanDice -0.015 with it)" in found
    assert "yes: on ClinicDB BSANet ranks 3 of 4 by meanDice (0.005 behind U-Net)" in found
