"""The PDF report: page 1 a clinician can file, page numbers, slices shown, developer detail in an appendix."""

from __future__ import annotations

import datetime as dt
import io
import json
import re
import zlib

import numpy as np
import pytest
from PIL import Image

from medattn.app import pipelines
from medattn.app.db import Case, User
from medattn.app.reports import DISCLAIMER, build_report, findings_summary, validated_performance


def pdf_pages(data: bytes) -> list[str]:
    """The text of each page of an fpdf2 PDF (core fonts: ``(text) Tj`` in zlib content streams)."""
    pages = []
    # each stream read by its /Length: compressed bytes may end in b"\r" or hold b"endstream"
    for m in re.finditer(rb"<<([^<>]*)>>\s*stream\r?\n", data):
        length = re.search(rb"/Length (\d+)", m.group(1))
        if length is None:
            continue
        raw = data[m.end():m.end() + int(length.group(1))]
        try:
            content = zlib.decompress(raw)
        except zlib.error:
            content = raw
        if b" Tj" not in content or b"BT" not in content:
            continue
        blocks = re.findall(rb"BT(.*?)ET", content, re.S)  # one text object per cell; its runs joined
        pages.append("\n".join("".join(_unescape(t) for t in re.findall(rb"\(((?:[^()\\]|\\.)*)\)\s*Tj", b))
                               for b in blocks))
    assert len(pages) == data.count(b"/Type /Page\n") or len(pages) == len(re.findall(rb"/Type /Page\b", data))
    return pages


def _unescape(text: bytes) -> str:
    return re.sub(rb"\\(.)", rb"\1", text).decode("latin-1")


def _png(color: tuple[int, int, int], size=(96, 64)) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((size[1], size[0], 3), color, np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def _case(app, **results) -> tuple[Case, object]:
    state = app.state.medattn
    s = state.db.session().__enter__()
    user = User(username="rita", password_hash="x")
    s.add(user)
    s.flush()
    lesions = [{"area_px": 400, "area_mm2": 98.5, "bbox": [1, 2, 30, 40], "mean_confidence": 0.91, "slice": 4},
               {"area_px": 90, "area_mm2": 22.0, "bbox": [5, 5, 15, 15], "mean_confidence": 0.72, "slice": 5},
               {"area_px": 20, "area_mm2": 4.9, "bbox": [7, 7, 10, 10], "mean_confidence": 0.61, "slice": 9}]
    case = Case(owner_id=user.id, title="Case x", pipeline="segment", model_name="bsanet-polyp",
                model_version=pipelines.model_version("bsanet-polyp"), input_name="c-1.zip",
                input_format="dicom-series", modality="CT", status="done", meta={"layout": "ZHW", "shape": [12, 64, 96]},
                results={"lesions": lesions, "spacing": [0.98, 0.98], "shown_slice": 4, **results},
                finished_at=dt.datetime(2026, 12, 7, 3, 0))
    s.add(case)
    s.flush()
    for kind, color in (("preview", (90, 90, 90)), ("overlay", (200, 40, 40)), ("attention", (40, 40, 200)),
                        ("mask", (255, 255, 255))):
        state.store.add_bytes(s, case, kind, f"{kind}.png", _png(color))
    s.commit()
    return case, state.store


def test_page_one_holds_what_a_clinician_files(app):
    from medattn.models.hub import WEIGHTS_DIR

    case, store = _case(app)
    pages = pdf_pages(build_report(case, store))
    first = pages[0]
    card = json.loads((WEIGHTS_DIR / "bsanet-polyp.json").read_text(encoding="utf-8"))
    kvasir = card["metrics"]["test"]["test_kvasir"]
    performance = f"mean Dice {kvasir['meanDice']:.3f} (kvasir, {kvasir['count']} images)"
    for expected in (case.id, f"{case.created_at:%Y-%m-%d}", "modality: CT", "bsanet-polyp, version",
                     "Intended use", "Validated performance", performance, "Findings",
                     "The model marked 3 possible lessions".replace("lessions", "lesions"),
                     "on slice 5; marks on slices 5-6, 10", "Key images (volume: slice 5 of 12 shown)",
                     "Original - slice 5 of 12", "Mask overlay - slice 5 of 12", "Reviewed by",
                     "does not replace a clinician", f"Page 1 of {len(pages)}"):
        assert expected in first, expected
    assert "Colorized" not in first and "mask" not in first.lower().replace("mask overlay", "")
    assert "sha256" not in first and "command" not in first  # developer detail stays off page 1
    assert pages[1].strip().startswith("Lesion table (3 marked") and "Page 2 of" in pages[1]
    assert "Appendix: model card detail" in pages[-1] and "sha256:" in pages[-1] and "command:" in pages[-1]
    assert all(f"Page {i} of {len(pages)}" in p for i, p in enumerate(pages, 1))
    assert DISCLAIMER.split(".")[0].replace("  ", " ")[:40] in first


def test_modality_override_and_card_fields_are_shown(app, monkeypatch):
    card = {"model": "bsanet", "task": "segmentation", "version": "v9", "modality": ["endoscopy"],
            "intended_use": "Marks polyp candidates in colonoscopy frames for a gastroenterologist's review.",
            "metrics": {"test": {"dice": 0.8}}}
    monkeypatch.setattr(pipelines, "model_card", lambda name: card)
    case, store = _case(app, modality_override=True, input_modality="ct")
    first = pdf_pages(build_report(case, store))[0]
    assert "MODALITY OVERRIDE: this CT input was processed with a model made for endoscopy" in first
    assert "Marks polyp candidates in colonoscopy frames" in first and "(inputs: endoscopy)" in first
    assert "bsanet-polyp, version v9" in first and "Dice 0.8" in first


def test_unknown_model_and_plain_image_fall_back(app, monkeypatch):
    monkeypatch.setattr(pipelines, "model_card", lambda name: None)
    case, store = _case(app)
    case.meta, case.modality = {"layout": "HWC", "shape": [64, 96, 3]}, None
    first = pdf_pages(build_report(case, store))[0]
    assert "modality: not recorded" in first and "slice" not in first.split("Findings")[1].split("Reviewed")[0]
    assert "MODALITY OVERRIDE" not in first


def test_findings_in_plain_words():
    case = Case(results={"lesions": [], "metrics": {"noise SD before (HU, estimated)": 21.0,
                                                    "noise SD after (HU, estimated)": 9.5}}, meta={})
    text = findings_summary(case)
    assert "marked no lesion" in text and "from 21.0 HU to 9.5 HU" in text and "clinician's review" in text


@pytest.mark.parametrize(("metrics", "expected"), [
    ({"test": {"test_kvasir": {"dice": 0.8712}, "test_clinicdb": {"dice": 0.7953}}}, "Dice 0.871 (kvasir); Dice 0.795"),
    ({"test": {"test_kvasir": {"dice": 0.87, "meanDice": 0.8406, "count": 100}}},  # the papers' metric first
     "mean Dice 0.841 (kvasir, 100 images)"),
    ({"test": {"low_dose_input": {"psnr": 30.5}, "psnr": 33.9, "psnr_gain_db": 3.4, "ssim": 0.926},
      "test_kind": "real quarter-dose"},  # the model's scores, never the input's reference row
     "PSNR (dB) 33.9, PSNR gain (dB) 3.4, SSIM 0.926 - held-out test: real quarter-dose"),
    ({"test": {"psnr": 33.9, "ssim": 0.93}, "test_kind": "real quarter-dose"}, "PSNR (dB) 33.9, SSIM 0.93 - held-out test: real"),
    ({}, "no validated performance"),
])
def test_validated_performance(metrics, expected):
    assert expected in validated_performance({"metrics": metrics})


def test_a_long_page_one_keeps_images_on_the_page(app, monkeypatch):
    card = {"model": "bsanet", "version": "v1", "intended_use": "Long statement. " * 150}
    monkeypatch.setattr(pipelines, "model_card", lambda name: card)
    case, store = _case(app, modality_override=True)
    data = build_report(case, store)
    contents = [zlib.decompress(raw) for raw in re.findall(rb"stream\r?\n(.*?)\r?\nendstream", data, re.S)
                if raw[:2] == b"x\x9c" and b"BT" in zlib.decompress(raw)]
    placed = [(float(m[1]), float(m[3])) for c in contents
              for m in re.findall(rb"([\d.]+) 0 0 ([\d.]+) ([\d.]+) ([\d.]+) cm", c)]
    assert len(placed) == 3  # preview, overlay, attention: all drawn
    bottom = 18 / 25.4 * 72  # the bottom margin, in points from the page's lower edge
    assert all(y >= bottom for _, y in placed)
    assert "Reviewed by" in "".join(pdf_pages(data))
