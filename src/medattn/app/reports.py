"""The PDF report of a finished case (fpdf2, core fonts: no external resources)."""

from __future__ import annotations

import datetime as dt

from fpdf import FPDF

from medattn import __version__
from medattn.app.db import Case
from medattn.app.storage import CaseStore

DISCLAIMER = (
    "This result was produced by software to assist a clinician. It does not replace a clinician's "
    "diagnosis or judgement and must be reviewed by a qualified professional."
)
MAX_LESION_ROWS = 60
_PANELS = (("preview", "Original"), ("processed", "Processed"), ("colorized", "Colorized"), ("overlay", "Mask overlay"),
           ("attention", "Attention map"))


def _latin1(text: object) -> str:
    return str(text).encode("latin-1", "replace").decode("latin-1")


def build_report(case: Case, store: CaseStore) -> bytes:
    pdf = FPDF(orientation="P", unit="mm", format="A4")
    pdf.set_auto_page_break(auto=True, margin=15)
    pdf.set_title(f"medattn case {case.id}")
    pdf.set_creator(f"medattn {__version__}")
    pdf.add_page()
    pdf.set_font("Helvetica", "B", 16)
    pdf.cell(0, 10, "medattn - auxiliary diagnosis report", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", size=10)
    facts = [
        ("Case", case.id),
        ("Title", case.title or case.input_name),
        ("Input", f"{case.input_name} ({case.input_format}{', ' + case.modality if case.modality else ''})"),
        ("Pipeline", case.pipeline),
        ("Model", f"{case.model_name or '-'} (version {case.model_version or '-'})"),
        ("Created", f"{case.created_at:%Y-%m-%d %H:%M} UTC"),
        ("Finished", f"{case.finished_at:%Y-%m-%d %H:%M} UTC" if case.finished_at else "-"),
        ("Report generated", f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC, medattn {__version__}"),
    ]
    spacing = case.results.get("spacing")
    if spacing:
        facts.append(("Pixel spacing (mm)", " x ".join(f"{s:.3g}" for s in spacing)))
    for k, v in facts:
        pdf.set_font("Helvetica", "B", 10)
        pdf.cell(40, 6, _latin1(k))
        pdf.set_font("Helvetica", size=10)
        pdf.multi_cell(0, 6, _latin1(v), new_x="LMARGIN", new_y="NEXT")

    files = {f.kind: f for f in case.files}
    panels = [(kind, label) for kind, label in _PANELS if kind in files]
    if panels:
        pdf.ln(3)
        width = (pdf.w - pdf.l_margin - pdf.r_margin - 4 * (min(len(panels), 2) - 1)) / min(len(panels), 2)
        y0 = pdf.get_y()
        for i, (kind, label) in enumerate(panels):
            col, row = i % 2, i // 2
            if col == 0 and row > 0:
                y0 = pdf.get_y() + 2
            x = pdf.l_margin + col * (width + 4)
            path = store.path(case.id, files[kind].name)
            info = pdf.image(str(path), x=x, y=y0, w=width)
            pdf.set_xy(x, y0 + info.rendered_height + 1)
            pdf.set_font("Helvetica", "I", 9)
            pdf.cell(width, 5, label, align="C")
            if col == 1 or i == len(panels) - 1:
                pdf.set_y(y0 + info.rendered_height + 7)

    lesions = case.results.get("lesions")
    if lesions is not None:
        pdf.ln(2)
        pdf.set_font("Helvetica", "B", 12)
        pdf.cell(0, 8, f"Lesions found: {len(lesions)}", new_x="LMARGIN", new_y="NEXT")
        if lesions:
            pdf.set_font("Helvetica", "B", 9)
            heads = ("#", "Area (px)", "Area (mm2)", "Bounding box x0,y0,x1,y1", "Mean confidence", "Slice")
            widths = (10, 25, 25, 60, 30, 20)
            for h, w in zip(heads, widths, strict=True):
                pdf.cell(w, 6, h, border=1)
            pdf.ln()
            pdf.set_font("Helvetica", size=9)
            for i, les in enumerate(lesions[:MAX_LESION_ROWS], 1):
                mm2 = les.get("area_mm2")
                row = (str(i), str(les["area_px"]), f"{mm2:.1f}" if mm2 is not None else "n/a",
                       ", ".join(str(v) for v in les["bbox"]), f"{les['mean_confidence']:.2f}",
                       str(les.get("slice", "-")))
                for v, w in zip(row, widths, strict=True):
                    pdf.cell(w, 6, v, border=1)
                pdf.ln()
            if len(lesions) > MAX_LESION_ROWS:
                pdf.cell(0, 6, f"... and {len(lesions) - MAX_LESION_ROWS} smaller lesions (all are in the API "
                               "and the NIfTI mask)", new_x="LMARGIN", new_y="NEXT")
    metrics = case.results.get("metrics")
    if metrics:
        pdf.ln(2)
        pdf.set_font("Helvetica", "B", 12)
        pdf.cell(0, 8, "Measurements", new_x="LMARGIN", new_y="NEXT")
        pdf.set_font("Helvetica", size=9)
        for k, v in metrics.items():
            pdf.cell(0, 5, _latin1(f"{k}: {v}"), new_x="LMARGIN", new_y="NEXT")

    pdf.ln(4)
    pdf.set_font("Helvetica", "B", 10)
    pdf.multi_cell(0, 5, DISCLAIMER, new_x="LMARGIN", new_y="NEXT")
    return bytes(pdf.output())
