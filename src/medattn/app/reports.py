"""The PDF report of a finished case (fpdf2, core fonts: no external resources).

Page 1 is what a clinician files: case id and dates, modality, the model
(name, version, intended use, validated performance), a plain-language
summary of the findings, up to four key images in a 2x2 grid (each caption
drawn with its image; for volumes the slice shown), the assistive-use
disclaimer and a reviewer sign-off line. The lesion table and measurements
follow; the model card's developer detail (commands, hashes, training) is an
appendix. Every page carries ``Page i of n``.

Slices are numbered from 1 (the first slice of the stored input), here as in
the lesion table.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

from fpdf import FPDF

from medattn import __version__
from medattn.app.db import Case
from medattn.app.storage import CaseStore

DISCLAIMER = (
    "This result was produced by software to assist a clinician. It does not replace a clinician's "
    "diagnosis or judgement and must be reviewed by a qualified professional."
)
MAX_LESION_ROWS = 60
_PANELS = (("preview", "Original"), ("processed", "Processed"), ("overlay", "Mask overlay"),
           ("attention", "Attention map"), ("colorized", "Colorized"))
_KEY_IMAGES = 4
# Headline metrics of a model card's held-out test, in order of preference, with their labels.
_HEADLINE = (("meanDice", "mean Dice"), ("dice", "Dice"), ("iou", "IoU"), ("psnr", "PSNR (dB)"),
             ("psnr_gain_db", "PSNR gain (dB)"), ("ssim", "SSIM"), ("crop_auc", "AUC"), ("crop_accuracy", "accuracy"),
             ("accuracy", "accuracy"), ("psnr_colorized", "PSNR (dB)"))
# Groups of a card's test results that are references, not the model's own scores.
_REFERENCE_GROUPS = ("low_dose_input", "input", "baseline", "machine")
# Card fields that are developer detail: the appendix, never page 1.
_APPENDIX_FIELDS = ("version", "sha256", "summary", "command", "bundled_with", "pretraining_commands", "trained_from",
                    "checkpoint", "epochs", "input_size", "hardware", "wall_clock_seconds", "training", "data",
                    "split", "options")
_GRAY = (90, 90, 90)


def _latin1(text: object) -> str:
    return str(text).encode("latin-1", "replace").decode("latin-1")


class _ReportPDF(FPDF):
    """A4 with the case id and ``Page i of n`` in every footer."""

    case_label = ""

    def footer(self) -> None:
        self.set_y(-12)
        self.set_font("Helvetica", size=8)
        self.set_text_color(*_GRAY)
        self.cell(0, 5, _latin1(f"medattn {__version__} - {self.case_label}"), align="L")
        self.set_x(self.l_margin)
        self.cell(0, 5, f"Page {self.page_no()} of {{nb}}", align="R")
        self.set_text_color(0, 0, 0)


def build_report(case: Case, store: CaseStore) -> bytes:
    """The case's PDF report (see the module docstring for its layout)."""
    pdf = _ReportPDF(orientation="P", unit="mm", format="A4")
    pdf.case_label = f"case {case.id}"
    pdf.set_auto_page_break(auto=True, margin=18)
    pdf.set_title(f"medattn case {case.id}")
    pdf.set_creator(f"medattn {__version__}")
    cards = model_cards(case.model_name)
    pdf.add_page()
    _title(pdf, case)
    _override_warning(pdf, case, cards)
    _facts(pdf, _case_facts(case, cards))
    _heading(pdf, "Findings")
    _paragraph(pdf, findings_summary(case))
    _key_images(pdf, case, store, reserve=42)
    _disclaimer_and_signoff(pdf)
    _lesion_table(pdf, case)
    _measurements(pdf, case)
    _appendix(pdf, cards)
    return bytes(pdf.output())


# -- what the report says ---------------------------------------------------------------------------


def model_cards(model_name: str | None) -> list[dict[str, Any]]:
    """The cards of the model(s) a case used (a chain ``a+b`` has two); unknown models give none."""
    from medattn.app import pipelines

    cards = []
    for part in (model_name or "").split("+"):
        card = pipelines.model_card(part) if part else None
        if card:
            cards.append({"name": part, **card})
    return cards


def validated_performance(card: dict[str, Any]) -> str:
    """The card's held-out test results in one line (``"mean Dice 0.841 (kvasir, 100 images); ..."``), or a notice.

    The model's own scores come first: scores at the top level of ``metrics.test`` (a denoiser's PSNR,
    with its gain over the input), else one group per test set. Reference rows stored beside them (the
    low-dose input's scores, the machine) are not the model's performance and are never shown as such.
    """
    metrics = card.get("metrics") if isinstance(card.get("metrics"), dict) else {}
    test = metrics.get("test")
    if not isinstance(test, dict) or not test:
        return "no validated performance in the model card"
    if _headline(test):
        parts = [_headline(test, most=3)]
    else:
        parts = [f"{_headline(v)} ({name.removeprefix('test_')}{_images(v)})" for name, v in test.items()
                 if isinstance(v, dict) and name not in _REFERENCE_GROUPS and _headline(v)]
    if not parts:
        return "no validated performance in the model card"
    where = metrics.get("test_kind")  # "source" (a script and a run folder) is developer detail: appendix
    return "; ".join(parts) + (f" - held-out test: {where}" if where else " on held-out test data")


def _images(values: dict[str, Any]) -> str:
    count = values.get("count")
    return f", {count} images" if isinstance(count, int) and not isinstance(count, bool) else ""


def _headline(values: dict[str, Any], most: int = 1) -> str:
    """The first ``most`` headline metrics present in ``values`` (each label once), e.g. ``"PSNR (dB) 33.9"``."""
    found: list[str] = []
    labels: set[str] = set()
    for key, label in _HEADLINE:
        v = values.get(key)
        if isinstance(v, int | float) and not isinstance(v, bool) and label not in labels:
            found.append(f"{label} {v:.3g}")
            labels.add(label)
        if len(found) == most:
            break
    return ", ".join(found)


def input_modality(case: Case) -> str:
    """The input's modality as recorded (the guard's ``input_modality``, else the DICOM Modality)."""
    results = case.results or {}
    value = str(results.get("input_modality") or case.modality or "not recorded")
    return value.upper() if value.lower() in ("ct", "mr") else value


def findings_summary(case: Case) -> str:
    """What the model found, in plain words, with the slices for volumes."""
    results = case.results or {}
    sentences = []
    lesions = results.get("lesions")
    if lesions is not None:
        sentences.append(_lesion_sentence(lesions, _is_volume(case)))
    metrics = results.get("metrics") or {}
    before, after = metrics.get("noise SD before (HU, estimated)"), metrics.get("noise SD after (HU, estimated)")
    if before is not None and after is not None:
        sentences.append(f"The image was denoised: the estimated noise went from {before} HU to {after} HU.")
    prob = metrics.get("lesion probability (classifier)")
    if prob is not None:
        verdict = "suggests a lesion" if metrics.get("lesion class activated") else "does not suggest a lesion"
        sentences.append(f"The classifier {verdict} (probability {float(prob):.2f}); the attention map shows "
                         "where it looked.")
    if not sentences:
        sentences.append("The image was processed; see the key images.")
    sentences.append("These are the software's marks, not a diagnosis: every finding needs a clinician's review.")
    return " ".join(sentences)


def _lesion_sentence(lesions: list[dict[str, Any]], volume: bool) -> str:
    if not lesions:
        return "The model marked no lesion."
    n = len(lesions)
    largest = lesions[0]
    size = (f"{largest['area_mm2']:.1f} mm\u00b2" if largest.get("area_mm2") is not None
            else f"{largest['area_px']} pixels")
    text = f"The model marked {n} possible lesion{'s' if n != 1 else ''}; the largest covers {size}"
    if volume and largest.get("slice") is not None:
        slices = sorted({int(les["slice"]) + 1 for les in lesions if les.get("slice") is not None})
        text += f" on slice {int(largest['slice']) + 1}; marks on slices {_ranges(slices)}"
    return text + "."


def _ranges(numbers: list[int]) -> str:
    """``[1, 2, 3, 7]`` -> ``"1-3, 7"``."""
    out: list[str] = []
    for n in numbers:
        if out and n == int(out[-1].split("-")[-1]) + 1:
            out[-1] = f"{out[-1].split('-')[0]}-{n}"
        else:
            out.append(str(n))
    return ", ".join(out)


def _is_volume(case: Case) -> bool:
    return (case.meta or {}).get("layout") in ("ZHW", "ZHWC")


def _slice_count(case: Case) -> int | None:
    shape = (case.meta or {}).get("shape")
    return int(shape[0]) if _is_volume(case) and shape else None


def _case_facts(case: Case, cards: list[dict[str, Any]]) -> list[tuple[str, str]]:
    finished = f"{case.finished_at:%Y-%m-%d %H:%M} UTC" if case.finished_at else "not finished"
    facts = [
        ("Case", case.id),
        ("Date", f"{case.created_at:%Y-%m-%d %H:%M} UTC (result {finished})"),
        ("Input", f"{case.input_name} ({case.input_format}), modality: {input_modality(case)}"),
        ("Analysis", case.pipeline),
    ]
    spacing = (case.results or {}).get("spacing")
    if spacing:
        facts.append(("Pixel spacing", " x ".join(f"{s:.3g}" for s in spacing) + " mm"))
    if not cards:
        facts.append(("Model", f"{case.model_name or '-'} (version {case.model_version or '-'})"))
    for card in cards:
        accepts = card.get("modality")
        facts += [
            ("Model", f"{card['name']}, version {card.get('version') or case.model_version or '-'}"),
            ("Intended use", str(card.get("intended_use") or card.get("summary") or "not stated in the model card")
             + (f" (inputs: {', '.join(accepts)})" if isinstance(accepts, list) and accepts else "")),
            ("Validated performance", validated_performance(card)),
        ]
    return facts


# -- how it is drawn --------------------------------------------------------------------------------


def _title(pdf: FPDF, case: Case) -> None:
    pdf.set_font("Helvetica", "B", 15)
    pdf.cell(0, 8, "medattn - auxiliary diagnosis report", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", size=9)
    pdf.set_text_color(*_GRAY)
    pdf.cell(0, 5, _latin1(f"Case {case.id} - report generated "
                           f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC"), new_x="LMARGIN", new_y="NEXT")
    pdf.set_text_color(0, 0, 0)
    pdf.ln(2)


def _override_warning(pdf: FPDF, case: Case, cards: list[dict[str, Any]]) -> None:
    """A red box when the operator ran a model outside the modality it was made for."""
    if not (case.results or {}).get("modality_override"):
        return
    made_for = sorted({m for c in cards for m in (c.get("modality") or []) if isinstance(m, str)})
    text = (f"MODALITY OVERRIDE: this {input_modality(case)} input was processed with a model made for "
            f"{', '.join(made_for) or 'another modality'}, at the operator's request. The results may be "
            "meaningless; do not rely on them.")
    pdf.set_fill_color(253, 226, 226)
    pdf.set_draw_color(180, 0, 0)
    pdf.set_text_color(150, 0, 0)
    pdf.set_font("Helvetica", "B", 10)
    pdf.multi_cell(0, 5.5, _latin1(text), border=1, fill=True, padding=2, new_x="LMARGIN", new_y="NEXT")
    pdf.set_text_color(0, 0, 0)
    pdf.set_draw_color(0, 0, 0)
    pdf.ln(2)


def _facts(pdf: FPDF, facts: list[tuple[str, str]]) -> None:
    for key, value in facts:
        pdf.set_font("Helvetica", "B", 9)
        pdf.cell(38, 5, _latin1(key))
        pdf.set_font("Helvetica", size=9)
        pdf.multi_cell(0, 5, _latin1(value), align="L", new_x="LMARGIN", new_y="NEXT")


def _heading(pdf: FPDF, text: str) -> None:
    pdf.ln(2)
    pdf.set_font("Helvetica", "B", 11)
    pdf.cell(0, 7, _latin1(text), new_x="LMARGIN", new_y="NEXT")


def _paragraph(pdf: FPDF, text: str, size: float = 9.5) -> None:
    pdf.set_font("Helvetica", size=size)
    pdf.multi_cell(0, 5, _latin1(text), align="L", new_x="LMARGIN", new_y="NEXT")


def _panels(case: Case, store: CaseStore) -> list[tuple[Path, str]]:
    files = {f.kind: f for f in case.files}
    chosen = [(store.path(case.id, files[kind].name), label) for kind, label in _PANELS if kind in files]
    return chosen[:_KEY_IMAGES]


def _shown_caption(case: Case) -> str:
    total, shown = _slice_count(case), (case.results or {}).get("shown_slice")
    if total is None or shown is None:
        return ""
    return f" - slice {int(shown) + 1} of {total}"


def _key_images(pdf: FPDF, case: Case, store: CaseStore, reserve: float) -> None:
    """Up to four images in a 2x2 grid sized to what is left of the page above ``reserve`` mm."""
    from PIL import Image

    panels = _panels(case, store)
    if not panels:
        return
    _heading(pdf, "Key images" + (f" (volume: slice {int(case.results['shown_slice']) + 1} of "
                                  f"{_slice_count(case)} shown)" if _shown_caption(case) else ""))
    gap, caption, smallest = 4.0, 5.0, 25.0
    rows = (len(panels) + 1) // 2
    cell_w = (pdf.epw - gap) / 2
    room = pdf.h - pdf.b_margin - reserve - pdf.get_y()
    if room / rows - caption - 1 < smallest:  # a long page 1 (chains, override notice): images on the next
        pdf.add_page()
        room = pdf.h - pdf.b_margin - reserve - pdf.get_y()
    cell_h = min(cell_w, room / rows - caption - 1)
    top = pdf.get_y()
    for i, (path, label) in enumerate(panels):
        x = pdf.l_margin + (i % 2) * (cell_w + gap)
        y = top + (i // 2) * (cell_h + caption + 1)
        with Image.open(path) as im:
            w_px, h_px = im.size
        scale = min(cell_w / w_px, cell_h / h_px)
        w, h = w_px * scale, h_px * scale
        pdf.image(str(path), x=x + (cell_w - w) / 2, y=y + (cell_h - h), w=w, h=h)
        pdf.set_xy(x, y + cell_h)
        pdf.set_font("Helvetica", "I", 8.5)
        pdf.cell(cell_w, caption, _latin1(label + _shown_caption(case)), align="C")
    pdf.set_xy(pdf.l_margin, top + rows * (cell_h + caption + 1))


def _disclaimer_and_signoff(pdf: FPDF) -> None:
    pdf.ln(2)
    pdf.set_font("Helvetica", "B", 9)
    pdf.multi_cell(0, 4.5, DISCLAIMER, border="T", padding=(1.5, 0, 0, 0), new_x="LMARGIN", new_y="NEXT")
    pdf.ln(5)
    pdf.set_font("Helvetica", size=9.5)
    pdf.cell(0, 6, "Reviewed by: ______________________________   Signature: __________________   "
                   "Date: ____________", new_x="LMARGIN", new_y="NEXT")


def _lesion_table(pdf: FPDF, case: Case) -> None:
    lesions = (case.results or {}).get("lesions")
    if not lesions:
        return
    pdf.add_page()
    _heading(pdf, f"Lesion table ({len(lesions)} marked, largest first)")
    heads = ("#", "Area (px)", "Area (mm\u00b2)", "Bounding box x0,y0,x1,y1", "Mean confidence", "Slice")
    widths = (10, 25, 25, 60, 30, 20)
    pdf.set_font("Helvetica", "B", 9)
    for h, w in zip(heads, widths, strict=True):
        pdf.cell(w, 6, h, border=1)
    pdf.ln()
    pdf.set_font("Helvetica", size=9)
    for i, les in enumerate(lesions[:MAX_LESION_ROWS], 1):
        mm2 = les.get("area_mm2")
        row = (str(i), str(les["area_px"]), f"{mm2:.1f}" if mm2 is not None else "n/a",
               ", ".join(str(v) for v in les["bbox"]), f"{les['mean_confidence']:.2f}",
               str(int(les["slice"]) + 1) if les.get("slice") is not None else "-")
        for v, w in zip(row, widths, strict=True):
            pdf.cell(w, 6, v, border=1)
        pdf.ln()
    if len(lesions) > MAX_LESION_ROWS:
        pdf.cell(0, 6, f"... and {len(lesions) - MAX_LESION_ROWS} smaller lesions (all are in the API "
                       "and the NIfTI mask)", new_x="LMARGIN", new_y="NEXT")


def _measurements(pdf: FPDF, case: Case) -> None:
    metrics = (case.results or {}).get("metrics")
    if not metrics:
        return
    _heading(pdf, "Measurements")
    for k, v in metrics.items():
        _paragraph(pdf, f"{k}: {v}", size=9)


def _appendix(pdf: FPDF, cards: list[dict[str, Any]]) -> None:
    """The model cards' developer detail: how each model was made, for audit."""
    if not cards:
        return
    pdf.add_page()
    _heading(pdf, "Appendix: model card detail (for audit)")
    for card in cards:
        pdf.set_font("Helvetica", "B", 9.5)
        pdf.cell(0, 6, _latin1(f"{card['name']} ({card.get('model', '?')}, task {card.get('task', '?')})"),
                 new_x="LMARGIN", new_y="NEXT")
        for field in _APPENDIX_FIELDS:
            if card.get(field) not in (None, "", [], {}):
                _paragraph(pdf, f"{field}: {_short(card[field])}", size=8)
        source = (card.get("metrics") or {}).get("source") if isinstance(card.get("metrics"), dict) else None
        if source:
            _paragraph(pdf, f"validated performance measured by: {source}", size=8)
        pdf.ln(2)


def _short(value: Any, limit: int = 700) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= limit else text[:limit] + " ..."
