"""What the case viewer shows: display orientation and per-slice layers.

Orientation: a NIfTI volume's voxels are stored in whatever order the file has
(the TotalSegmentator example is RAS: its rows run posterior to anterior, so
shown as stored it is upside down). :func:`to_radiological` reorders the two
in-plane axes (transpose, flips; never resampling) so that slices show in the
radiological convention: patient right on the screen's left, anterior (axial,
sagittal planes: superior) at the top; sagittal slices show anterior on the
left. The affine is updated with the array, so the mask exports keep their
world geometry. DICOM pixel rows and columns already are the display order.

Layers: at processing time :func:`viewer_files` writes ``.npy`` stacks of shape
(Z, H, W[, 3]), one slice per 2D image, which the API serves slice by slice
(:func:`read_slice`) for the browser to window, colour and draw itself:

- ``image``: the input values (HU for CT; int16 when the values are integers that
  fit, else float32; uint8 RGB for colour images);
- ``processed``: the denoised values, same convention;
- ``labels``: lesion numbers (uint8, or uint16 beyond 255 lesions), see
  :mod:`medattn.inference.lesions`;
- ``attention``: the attention map scaled to uint8 0..255.

``viewer.json`` holds the DICOM window (centre, width) when the file has one and
whether the image is CT (DICOM modality CT, or a gray image without a modality
whose values reach air, < -500 HU, like a CT NIfTI): the viewer then offers the
CT presets and opens in the soft-tissue window.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

LAYERS = ("image", "processed", "labels", "attention")
INFO_NAME = "viewer.json"


def layer_name(layer: str) -> str:
    """The case file holding ``layer`` (``view_image.npy`` ...)."""
    if layer not in LAYERS:
        raise KeyError(layer)
    return f"view_{layer}.npy"


# --------------------------------------------------------------- orientation
def display_orientation(affine: np.ndarray) -> dict[str, bool]:
    """How to reorder a slice's (row, column) axes for the radiological convention.

    ``affine`` maps voxel (i, j, k) = (column, row, slice) to RAS+ millimetres.
    The column axis is the in-plane axis closest to x (else y); both screen axes
    must run towards a negative RAS direction: columns to the patient's left
    (sagittal: posterior), rows to posterior (coronal, sagittal: inferior).
    """
    from nibabel.orientations import io_orientation

    ornt = io_orientation(np.asarray(affine, dtype=float))
    (col_axis, col_sign), (row_axis, row_sign) = ornt[0], ornt[1]
    transpose = row_axis < col_axis
    if transpose:
        (col_axis, col_sign), (row_axis, row_sign) = (row_axis, row_sign), (col_axis, col_sign)
    return {"transpose": bool(transpose), "flip_rows": bool(row_sign > 0), "flip_cols": bool(col_sign > 0)}


def orient(array: np.ndarray, how: dict[str, bool]) -> np.ndarray:
    """Apply :func:`display_orientation`'s ``how`` to the last two axes of ``array`` (``(..., H, W)``)."""
    a = np.swapaxes(array, -1, -2) if how.get("transpose") else array
    if how.get("flip_rows"):
        a = a[..., ::-1, :]
    if how.get("flip_cols"):
        a = a[..., ::-1]
    return np.ascontiguousarray(a)


def to_file_order(array: np.ndarray, how: dict[str, bool] | None) -> np.ndarray:
    """Undo :func:`orient` (``how`` ``None``: unchanged): back to the input file's voxel order."""
    if not how:
        return array
    a = array[..., ::-1, :] if how.get("flip_rows") else array
    a = a[..., ::-1] if how.get("flip_cols") else a
    return np.ascontiguousarray(np.swapaxes(a, -1, -2) if how.get("transpose") else a)


def _oriented_affine(affine: np.ndarray, how: dict[str, bool], rows: int, cols: int) -> np.ndarray:
    """The affine of the reoriented array (``rows`` x ``cols`` after the transpose)."""
    m = np.eye(4)
    if how["transpose"]:
        m[:, [0, 1]] = m[:, [1, 0]]
    flip = np.eye(4)
    if how["flip_cols"]:
        flip[0, 0], flip[0, 3] = -1, cols - 1
    if how["flip_rows"]:
        flip[1, 1], flip[1, 3] = -1, rows - 1
    return np.asarray(affine, dtype=float) @ m @ flip


def to_radiological(data: Any) -> Any:
    """``ImageData`` with a NIfTI's slices in the radiological display order (others unchanged).

    ``meta.extra["display_orientation"]`` records what was done (see :func:`orient`),
    so arrays read again from the same file can follow with :func:`match_orientation`.
    """
    meta = data.meta
    if meta.affine is None or meta.layout not in ("HW", "ZHW"):
        return data
    how = display_orientation(meta.affine)
    if not any(how.values()):
        return data
    arr = orient(data.array, how)
    spacing = meta.spacing
    if spacing is not None and how["transpose"]:
        spacing = (*spacing[:-2], spacing[-1], spacing[-2])
    affine = _oriented_affine(meta.affine, how, arr.shape[-2], arr.shape[-1])
    extra = {**meta.extra, "display_orientation": how}
    return type(data)(arr, replace(meta, spacing=spacing, affine=affine, extra=extra))


def match_orientation(array: np.ndarray, meta: Any) -> np.ndarray:
    """Reorder ``array`` (read from the case's input file) like :func:`to_radiological` did to ``meta``'s image."""
    how = (meta.extra or {}).get("display_orientation")
    return orient(array, how) if how else array


# -------------------------------------------------------------------- layers
def _values(a: np.ndarray) -> np.ndarray:
    """Pixel values as the smallest dtype the browser reads exactly: uint8, int16 or float32."""
    a = np.asarray(a)
    if a.dtype == np.uint8 or a.dtype == bool:
        return a.astype(np.uint8)
    whole = np.issubdtype(a.dtype, np.integer) or (np.isfinite(a).all() and np.array_equal(a, np.round(a)))
    if whole and (a.size == 0 or (a.min() >= -32768 and a.max() <= 32767)):
        return a.astype(np.int16)
    return np.nan_to_num(a.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)


def _stack(a: np.ndarray, volume: bool) -> np.ndarray:
    return a if volume else a[None]


def _save(tmp: Path, layer: str, array: np.ndarray) -> tuple[str, Path, str]:
    name = layer_name(layer)
    np.save(tmp / name, array)
    return (f"view_{layer}", tmp / name, name)


def viewer_files(tmp: Path, *, image: Any = None, processed: np.ndarray | None = None,
                 labels: np.ndarray | None = None, attention: np.ndarray | None = None) -> list[tuple[str, Path, str]]:
    """Write the viewer's layers under ``tmp``; returns ``(kind, path, stored name)`` for the case files.

    ``image`` is the case's ``ImageData`` (after :func:`to_radiological`); the
    other layers are (Z, H, W) for a volume, (H, W) for an image.
    """
    files = []
    if image is not None:
        a, layout = image.array, image.meta.layout
        volume = layout in ("ZHW", "ZHWC")
        if layout.endswith("C"):
            a = a[..., :3] if a.shape[-1] >= 3 else np.repeat(a[..., :1], 3, -1)
            a = a if a.dtype == np.uint8 else _to_uint8(a)
        values = _values(a)
        files.append(_save(tmp, "image", _stack(values, volume)))
        info = {"window": _dicom_window(image.meta), "ct": _looks_ct(image.meta, values)}
        (tmp / INFO_NAME).write_text(json.dumps(info))
        files.append(("viewer", tmp / INFO_NAME, INFO_NAME))
    if processed is not None:
        files.append(_save(tmp, "processed", _values(processed)))
    if labels is not None:
        lab = labels.astype(np.uint8) if labels.max(initial=0) <= 255 else labels.astype(np.uint16)
        files.append(_save(tmp, "labels", lab if lab.ndim == 3 else lab[None]))
    if attention is not None:
        att = np.clip(np.nan_to_num(np.asarray(attention, np.float32)), 0, 1)
        att = (att * 255 + 0.5).astype(np.uint8)
        files.append(_save(tmp, "attention", att if att.ndim == 3 else att[None]))
    return files


def _looks_ct(meta: Any, values: np.ndarray) -> bool:
    """CT by its DICOM modality; without one (NIfTI), a gray image in Hounsfield units by the modality guard's
    rule (:func:`medattn.app.modality.looks_like_hu`), so the viewer and the guard agree on what is CT."""
    from medattn.app.modality import looks_like_hu

    modality = (meta.modality or "").upper()
    if modality:
        return modality == "CT"
    gray = not meta.layout.endswith("C") and values.dtype != np.uint8
    return gray and looks_like_hu(values)


def _to_uint8(a: np.ndarray) -> np.ndarray:
    from medattn.inference.render import to_rgb8

    return to_rgb8(a)


def _dicom_window(meta: Any) -> list[float] | None:
    """(centre, width) of the DICOM header's first window, if any."""
    ds = getattr(meta, "dicom", None)
    if ds is None:
        return None
    try:
        c, w = ds.get("WindowCenter"), ds.get("WindowWidth")
        if c is None or w is None:
            return None
        c = float(c[0] if hasattr(c, "__len__") and not isinstance(c, str) else c)
        w = float(w[0] if hasattr(w, "__len__") and not isinstance(w, str) else w)
    except (TypeError, ValueError):
        return None
    return [c, w] if np.isfinite(c) and np.isfinite(w) and w > 0 else None


# ------------------------------------------------------------------ serving
def read_info(case_dir: Path) -> dict[str, Any] | None:
    """What the case page needs to set up the viewer, or ``None`` for a case without viewer layers."""
    image = case_dir / layer_name("image")
    if not image.is_file():
        return None
    shape = np.load(image, mmap_mode="r").shape
    info: dict[str, Any] = {"window": None, "ct": False}
    if (case_dir / INFO_NAME).is_file():
        info.update(json.loads((case_dir / INFO_NAME).read_text()))
    info.update(slices=int(shape[0]), height=int(shape[1]), width=int(shape[2]),
                colour=len(shape) == 4, layers=[n for n in LAYERS if (case_dir / layer_name(n)).is_file()])
    return info


def read_slice(case_dir: Path, layer: str, z: int) -> tuple[bytes, np.dtype, tuple[int, ...]]:
    """Slice ``z`` (0-based) of ``layer``: little-endian bytes, dtype, shape. ``KeyError``/``IndexError`` if absent."""
    path = case_dir / layer_name(layer)
    if not path.is_file():
        raise KeyError(layer)
    stack = np.load(path, mmap_mode="r")
    if not 0 <= z < stack.shape[0]:
        raise IndexError(z)
    sl = np.ascontiguousarray(stack[z]).astype(stack.dtype.newbyteorder("<"), copy=False)
    return sl.tobytes(), sl.dtype, tuple(int(s) for s in sl.shape)
