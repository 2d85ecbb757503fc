"""``medattn models`` lists from a stored catalog: current, fast, and recomputed when a card changes."""

from __future__ import annotations

import json
import subprocess
import sys

import medattn.cli.models as models_cli


def test_stored_catalog_is_current():
    """What the registry and the bundled cards give now; regenerate with `python -m medattn.cli.models`."""
    stored = json.loads(models_cli.CATALOG.read_text(encoding="utf-8"))
    assert stored == json.loads(json.dumps(models_cli.catalog_document())), \
        "src/medattn/cli/model_catalog.json is stale: run `.venv/bin/python -m medattn.cli.models`"


def test_models_lists_without_importing_torch():
    """Building every network (and importing torch) was what made `medattn models` take 6-8 s; the
    catalog path must not import torch at all (the time itself is measured, not asserted: 0.2 s here)."""
    code = ("import sys, time; t = time.perf_counter(); from medattn.cli.main import main; "
            "rc = main(['models', '--json']); dt = time.perf_counter() - t; "
            "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH', round(dt, 3), rc, file=sys.stderr)")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    flag, _seconds, rc = run.stderr.split()[-3:]
    assert rc == "0" and flag == "NO-TORCH", run.stderr
    names = [r["name"] for r in json.loads(run.stdout)]
    assert "bsanet" in names and "bsanet-polyp" in names


def test_changed_card_means_recomputed_records(tmp_path, monkeypatch, run_cli):
    stale = json.loads(models_cli.CATALOG.read_text(encoding="utf-8"))
    stale["cards"]["bsanet-polyp"] = "0" * 64  # written before the card changed
    stale["models"] = [{**r, "description": "stale"} for r in stale["models"]]
    monkeypatch.setattr(models_cli, "CATALOG", tmp_path / "catalog.json")
    (tmp_path / "catalog.json").write_text(json.dumps(stale))
    code, out, _ = run_cli("models", "bsanet*", "--json")
    assert code == 0
    records = json.loads(out)
    assert [r["name"] for r in records] == ["bsanet", "bsanet_no_arm", "bsanet_no_fsam", "bsanet_no_isam",
                                            "bsanet-polyp"]
    assert all(r["description"] != "stale" for r in records)
    code, out, _ = run_cli("models", "--task", "denoising", "--json")
    assert code == 0 and {r["task"] for r in json.loads(out)} == {"denoising"}
