"""The pipelines registry: what the application runs on a case (segment, denoise, enhance, or a chain), and
the one place that decides which model runs on which input.

Each :class:`Pipeline` declares its steps (the model task of each step, in order), the input modalities it
takes and the function that runs it. :func:`resolve` picks the model(s) for a case and guards the modality:
the default comes from the input's modality (``medattn.app.modality``), and a model whose card does not
declare a fitting modality is refused (``ValueError``, shown as HTTP 400) unless the caller asks for an
explicit override, which the case then records (``modality_override`` and ``input_modality`` in its results).

A run reads the stored (de-identified) input, processes it slice by slice with progress, writes every result
file atomically, and only then commits the case as ``done``.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medattn.app import modality as mod
from medattn.app.db import Case, Database, utcnow
from medattn.app.modelcards import (  # noqa: F401  (re-exported: the application's model catalogue)
    USER_MODELS,
    modalities,
    model_card,
    model_version,
    models_for,
    scan_user_models,
)
from medattn.app.processing import ProcessResult, Progress, case_meta, load_input, slices
from medattn.app.storage import CaseStore
from medattn.app.viewer import to_radiological, viewer_files
from medattn.errors import MedattnError

OVERRIDE_HINT = "to run it anyway, send allow_modality_mismatch=true (the form's override box)"


@dataclass(frozen=True)
class RunContext:
    """What a pipeline's run function gets: the read input and where to write."""

    data: Any
    inputs: list[Path]
    input_format: str
    tmp: Path
    progress: Progress
    user_models: dict[str, Path]


@dataclass(frozen=True)
class Pipeline:
    """A pipeline: ``steps`` are the model tasks it runs in order (a chain has several), ``inputs`` the input
    modalities it takes, ``run(ctx, models)`` the computation (one model name per step)."""

    name: str
    label: str
    steps: tuple[str, ...]
    inputs: frozenset[str]
    run: Callable[[RunContext, list[str]], ProcessResult]


def _run_segment(ctx: RunContext, models: list[str]) -> ProcessResult:
    from medattn.app.segmenting import segment_case

    parts, volume = slices(ctx.data)
    return segment_case(parts, ctx.data, models[0], ctx.user_models, ctx.tmp, ctx.progress, 0.05, 0.9, volume)


def _run_denoise(ctx: RunContext, models: list[str]) -> ProcessResult:
    from medattn.app.denoising import denoise_case

    res, denoised = denoise_case(ctx.data, models[0], ctx.user_models, ctx.inputs, ctx.input_format, ctx.tmp,
                                 ctx.progress, 0.05, 0.9)
    res.files += viewer_files(ctx.tmp, processed=denoised)
    return res


def _run_denoise_segment(ctx: RunContext, models: list[str]) -> ProcessResult:
    from medattn.app.denoising import denoise_case
    from medattn.app.segmenting import segment_case

    res, denoised = denoise_case(ctx.data, models[0], ctx.user_models, ctx.inputs, ctx.input_format, ctx.tmp,
                                 ctx.progress, 0.05, 0.45)
    seg = segment_case(list(denoised), type(ctx.data)(denoised, ctx.data.meta), models[1], ctx.user_models,
                       ctx.tmp, ctx.progress, 0.5, 0.45, slices(ctx.data)[1])
    res.files += [f for f in seg.files if f[0] != "preview"]
    res.files += viewer_files(ctx.tmp, processed=denoised)
    res.results.update(seg.results)
    return res


def _run_enhance(ctx: RunContext, models: list[str]) -> ProcessResult:
    from medattn.app.enhancing import enhance_case

    return enhance_case(ctx.data, models[0], ctx.user_models, ctx.tmp, ctx.progress, colorizer=default_colorizer())


_COLOUR = frozenset({"endoscopy", "dermoscopy", "rgb"})
_ANY = frozenset(mod.LABELS)
REGISTRY: dict[str, Pipeline] = {p.name: p for p in (
    Pipeline("segment", "Segment lesions", ("segmentation",), _ANY, _run_segment),
    Pipeline("denoise", "Denoise low-dose CT", ("denoising",), frozenset({"ct", "gray"}), _run_denoise),
    Pipeline("enhance", "Enhance for lesion detection", ("classification",), _COLOUR | {"gray"}, _run_enhance),
    Pipeline("denoise+segment", "Denoise, then segment", ("denoising", "segmentation"), frozenset({"ct", "gray"}),
             _run_denoise_segment),
)}
#: pipeline name -> label (the menus)
PIPELINES: dict[str, str] = {name: p.label for name, p in REGISTRY.items()}


# ------------------------------------------------------------------------------------------- the catalogue
def _model_entry(name: str) -> dict[str, Any]:
    found = modalities(name)
    return {"name": name, "modality": found or None,
            "modality_label": ", ".join(mod.label(m) for m in found) if found else mod.label("unknown")}


def catalog(input_modality: str | None = None) -> dict[str, Any]:
    """Pipelines with their models (each with its modality), default model and availability.

    With ``input_modality`` the lists keep only the models that fit such an input, and the defaults are
    chosen for it; a pipeline that does not take such inputs, or has no fitting model, is unavailable.
    """
    out: dict[str, Any] = {}
    for name, p in REGISTRY.items():
        per_step = [models_for(task) for task in p.steps]
        if input_modality is not None:
            per_step = [[m for m in names if mod.fits(modalities(m), input_modality)] for names in per_step]
        models = per_step[-1]
        available = all(per_step) and (input_modality is None or input_modality in p.inputs)
        default = _default_spec(p, input_modality) if available else None
        out[name] = {"label": p.label, "steps": list(p.steps), "inputs": sorted(p.inputs), "models": models,
                     "model_modalities": {m: _model_entry(m)["modality"] for n in per_step for m in n},
                     "default": default, "available": available}
    names = {m for p in out.values() for m in p["model_modalities"]}
    return {"input_modality": input_modality, "pipelines": out,
            "cards": {m: {**(model_card(m) or {}), **_model_entry(m)} for m in sorted(names)}}


def _default_spec(p: Pipeline, modality: str | None) -> str | None:
    try:
        return "+".join(_pick(task, modality, modality) for task in p.steps)
    except ValueError:
        return None


def default_colorizer() -> str | None:
    """The colorizer the enhance pipeline uses: the first one installed into ``<data_dir>/models``, else the
    first bundled one, else None."""
    found = models_for("colorization")
    return found[0] if found else None


# ------------------------------------------------------------------------------------------------- the guard
@dataclass(frozen=True)
class Resolution:
    """The model(s) a case will run (``"<denoiser>+<segmenter>"`` for the chain), the input's modality and
    whether a model that does not fit it was allowed by an explicit override."""

    model: str
    input_modality: str | None
    override: bool = False

    def results(self) -> dict[str, Any]:
        """The keys a case's results carry about the modality guard."""
        return {"input_modality": self.input_modality, "modality_override": self.override}


def resolve(pipeline: str, model: str | None, input_modality: str | None = None, guess: str | None = None,
            allow_mismatch: bool = False) -> Resolution:
    """The model(s) a new case will use; ``ValueError`` with a user-facing message if impossible.

    ``input_modality`` None (not known yet, e.g. before the upload is read) checks only the pipeline and the
    models' tasks. ``guess`` is the modality the default model comes from when the input is a colour picture of
    unknown kind (``rgb``). ``allow_mismatch`` lets a model of another (or unknown) modality run.
    """
    p = REGISTRY.get(pipeline)
    if p is None:
        raise ValueError(f"unknown pipeline {pipeline!r}; choose one of {', '.join(REGISTRY)}")
    for task in p.steps:
        if not models_for(task):
            raise ValueError(f"pipeline {pipeline!r} has no model installed ({task})")
    override = False
    if input_modality is not None and input_modality not in p.inputs:
        if not allow_mismatch:
            raise ValueError(f"pipeline {pipeline!r} does not take {mod.label(input_modality)} input (it takes "
                             f"{', '.join(mod.label(m) for m in sorted(p.inputs))}); {OVERRIDE_HINT}")
        override = True
    chosen = []
    for task, given in zip(p.steps, _split(p, model), strict=True):
        name = _pick(task, input_modality, guess or input_modality, given, allow_mismatch)
        override = override or (input_modality is not None and not mod.fits(modalities(name), input_modality))
        chosen.append(name)
    return Resolution("+".join(chosen), input_modality, override)


def _split(p: Pipeline, model: str | None) -> list[str | None]:
    """One requested model (or None for the default) per step; a chain's spec is ``"<den>+<seg>"``, either part
    may be left out, and a single name is the segmenter."""
    if len(p.steps) == 1:
        return [model or None]
    den, _, seg = (model or "").rpartition("+")
    return [den or None, seg or None]


def _pick(task: str, modality: str | None, guess: str | None, given: str | None = None,
          allow_mismatch: bool = False) -> str:
    """The model for one step: ``given`` checked against the task and the input's modality, else the default."""
    names = models_for(task)
    if given is not None:
        if given not in names:
            raise ValueError(f"model {given!r} cannot run a {task} step; choose one of {', '.join(names)}")
        if modality is not None and not allow_mismatch and not mod.fits(modalities(given), modality):
            raise ValueError(f"model {given!r} is for {_declared(given)}, but this input is "
                             f"{mod.label(modality)}; {OVERRIDE_HINT}")
        return given
    if modality is None:
        return names[0]
    for want in (guess, modality):
        fitting = [m for m in names if want is not None and mod.fits(modalities(m), want)]
        if fitting:
            return fitting[0]
    if allow_mismatch:
        return names[0]
    listed = "; ".join(f"{m} ({_declared(m)})" for m in names)
    raise ValueError(f"no {task} model for {mod.label(modality)} input is installed (installed: {listed}); "
                     f"{OVERRIDE_HINT}")


def _declared(name: str) -> str:
    found = modalities(name)
    return ", ".join(mod.label(m) for m in found) if found else "an unknown modality (its card declares none)"


def detect_input(files: list[tuple[str, bytes]], input_format: str) -> tuple[str, str]:
    """``(modality, best guess)`` of a checked upload (its stored, de-identified files)."""
    first = files[0][1]
    if input_format in ("dicom", "dicom-series"):
        tag = _dicom_modality(first)
        if tag:
            return mod.detect_tag(tag)
    with tempfile.TemporaryDirectory(prefix="medattn-probe-") as tmp:
        paths = []
        for name, blob in files:
            path = Path(tmp) / Path(name).name
            path.write_bytes(blob)
            paths.append(path)
        return mod.detect(load_input(paths, input_format, Path(tmp)))


def _dicom_modality(blob: bytes) -> str:
    import io

    import pydicom

    try:
        return str(pydicom.dcmread(io.BytesIO(blob), stop_before_pixels=True, force=True).get("Modality", "") or "")
    except Exception:  # unreadable here means: read the pixels below
        return ""


# ------------------------------------------------------------------------------------------------- running
def process(pipeline: str, model: str | None, inputs: list[Path], input_format: str, tmp: Path,
            progress: Progress, user_models: dict[str, Path] | None = None) -> ProcessResult:
    """Run ``pipeline`` with ``model`` (as :func:`resolve` gave it) on the case inputs; files go under ``tmp``."""
    p = REGISTRY.get(pipeline)
    if p is None:
        raise MedattnError(f"unknown pipeline {pipeline!r}")
    if not inputs:
        raise MedattnError("the case has no input file")
    if model is None:
        raise MedattnError(f"no model for pipeline {pipeline!r}")
    models = [m or "" for m in _split(p, model)]
    if len(models) > 1 and not models[0]:
        models[0] = models_for("denoising")[0] if models_for("denoising") else ""
    if not all(models):
        raise MedattnError(f"no model for every step of pipeline {pipeline!r} in {model!r}")
    progress(0.02, "reading the input")
    data = load_input(inputs, input_format, tmp)
    meta = case_meta(data, inputs)  # the file's geometry: exports write masks back in its voxel order
    data = to_radiological(data)  # volumes are processed and shown in radiological orientation
    meta["display_orientation"] = data.meta.extra.get("display_orientation")
    res = p.run(RunContext(data, inputs, input_format, tmp, progress, user_models or {}), models)
    res.meta = {**meta, **res.meta}
    res.files += viewer_files(tmp, image=data)
    progress(0.98, "saving results")
    return res


def run_case(db: Database, store: CaseStore, case_id: str, progress: Progress) -> None:
    """Process one case end to end (called by the worker)."""
    with db.session() as s:
        case = s.get(Case, case_id)
        pipeline, model = case.pipeline, case.model_name
        inputs = [store.path(case.id, f.name) for f in case.files if f.kind == "input"]
        input_format = case.input_format
        guard = {k: v for k, v in (case.results or {}).items() if k in ("input_modality", "modality_override")}
    with tempfile.TemporaryDirectory(prefix="medattn-case-", dir=store.scratch_dir()) as tmp:
        result = process(pipeline, model, inputs, input_format, Path(tmp), progress, user_models=USER_MODELS)
        # Files first (atomic), then the database row in one transaction.
        with db.session() as s:
            case = s.get(Case, case_id)
            for kind, path, name in result.files:
                store.add_file(s, case, kind, path, name=name)
            case.meta = {**result.meta, **guard}
            case.results = {**result.results, **guard}
            # One vocabulary for the case's modality (the guard's: ct, mr, endoscopy, ...); the file's own
            # DICOM Modality tag stays in case.meta["modality"].
            case.modality = guard.get("input_modality") or result.meta.get("modality")
            case.status, case.progress, case.message = "done", 1.0, ""
            case.finished_at = utcnow()

