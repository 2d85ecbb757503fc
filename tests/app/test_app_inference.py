"""The segment pipeline runs a model as its card says (``inference``: TTA, mask threshold) and records it."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from medattn.app.web import create_app

from .conftest import install_tiny_model, login, make_user, wait_done

SAMPLE = sorted((Path(__file__).resolve().parents[2] / "samples" / "kvasir" / "images").glob("*.jpg"))[0]


def _probabilities(weights: Path, tta: bool) -> np.ndarray:
    """The tiny model's probability map of the sample as the app computes it, with or without TTA."""
    from medattn.inference import load_model, predict_image
    from medattn.inference.files import display_image
    from medattn.io import read_image

    return predict_image(load_model(weights), display_image(read_image(SAMPLE)), tta=tta).prob


def _set_inference(weights: Path, block: dict) -> None:
    card_path = weights.with_suffix(".json")
    card = json.loads(card_path.read_text())
    card_path.write_text(json.dumps({**card, "inference": block}))


@pytest.fixture
def setup(settings):
    """An app whose model card asks for TTA and a threshold that keeps 60 % of the TTA map."""
    settings.ensure_dirs()
    name = install_tiny_model(settings, "tiny-tta")
    weights = settings.models_dir / f"{name}.safetensors"
    with_tta, without = _probabilities(weights, True), _probabilities(weights, False)
    threshold = round(float(np.quantile(with_tta, 0.4)), 4)
    _set_inference(weights, {"input_size": [64, 64], "tta": True, "threshold": threshold})
    app = create_app(settings, start_worker=True)
    make_user(app, "alice")
    with TestClient(app) as client:
        client.csrf = login(client, "alice")
        yield client, weights, threshold, with_tta, without


def _segment(client) -> tuple[dict, np.ndarray]:
    r = client.post("/api/cases", files={"files": (SAMPLE.name, SAMPLE.read_bytes())},
                    data={"pipeline": "segment", "model": "tiny-tta"}, headers={"X-CSRF-Token": client.csrf})
    assert r.status_code == 202, r.text
    done = wait_done(client, r.json()["cases"][0]["id"])
    assert done["status"] == "done", done["message"]
    png = client.get(f"/api/cases/{done['id']}/files/mask.png").content
    return done, np.asarray(Image.open(io.BytesIO(png))) > 127


def test_segment_uses_and_records_the_card_settings(setup):
    client, _, threshold, with_tta, without = setup
    expected = with_tta > threshold
    # the settings are told apart: neither the plain map nor the 0.5 threshold gives this mask
    assert (expected != (without > threshold)).mean() > 0.01 and (expected != (with_tta > 0.5)).mean() > 0.01
    done, mask = _segment(client)
    assert done["results"]["inference"] == {"input_size": [64, 64], "tta": True, "threshold": threshold, "zoom": 1}
    assert (mask != expected).mean() < 1e-3


def test_an_edited_card_takes_effect(setup):
    """The app's model cache notices a card edited in place (same weights file)."""
    client, weights, _, with_tta, _ = setup
    assert _segment(client)[0]["results"]["inference"]["tta"] is True
    _set_inference(weights, {"input_size": [64, 64], "tta": True, "threshold": 0.5})
    done, mask = _segment(client)
    assert done["results"]["inference"]["threshold"] == 0.5
    assert (mask != (with_tta > 0.5)).mean() < 1e-3
