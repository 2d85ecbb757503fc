"""NIfTI (nibabel) and NumPy ``.npy`` files.

NIfTI axis order: nibabel indexes voxels ``(i, j, k)`` = ``(x, y, z)``; medattn
returns the array transposed to ``(z, y, x)`` (like SimpleITK and nnU-Net), so
``array[k, j, i] == nib.load(p).get_fdata()[i, j, k]`` and ``spacing = (dz, dy, dx)``
from the header zooms. The voxel data is not reoriented: ``meta.affine`` is the
file's own voxel-to-world (RAS+) matrix for ``(i, j, k)`` indices, and
``meta.extra["axcodes"]`` names its orientation (e.g. ``('L', 'P', 'S')``).
``scl_slope``/``scl_inter`` are applied. A 4th axis of length 1 is dropped; a real
time or channel axis is an unsupported dimensionality.

``.npy``: 2-D -> ``HW``; 3-D -> ``HWC`` when the last axis has 3 or 4 entries,
else ``ZHW``; anything else is an unsupported dimensionality.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from medattn.errors import MedattnIOError
from medattn.io.base import (
    ImageData,
    ImageMeta,
    ImageReader,
    ImageWriter,
    check_pixels,
    finalize,
    register_reader,
    register_writer,
)
from medattn.utils.fileio import atomic_path


def _reason(exc: BaseException) -> str:
    return (str(exc).strip() or type(exc).__name__).splitlines()[0][:200]


def _nifti_magic(head: bytes) -> bool:
    if len(head) >= 348 and head[344:348] in (b"n+1\x00", b"ni1\x00"):
        return True
    return len(head) >= 8 and head[4:8] in (b"n+2\x00", b"ni2\x00")


@register_reader
class NIfTIReader(ImageReader):
    name = "nifti"
    extensions = (".nii", ".nii.gz")

    def sniff(self, head: bytes) -> bool:
        if head[:2] == b"\x1f\x8b":  # gzip: look at the decompressed header
            try:
                head = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(head, 352)
            except zlib.error:
                return False
        return _nifti_magic(head)

    def read(self, path: Path, max_pixels: int | None) -> ImageData:
        import nibabel as nib

        try:
            img = nib.load(path)
            shape = tuple(int(s) for s in img.shape)
        except (nib.filebasedimages.ImageFileError, gzip.BadGzipFile, EOFError, zlib.error,
                ValueError, OSError) as exc:
            raise MedattnIOError(path, f"not a valid NIfTI file or truncated ({_reason(exc)})") from None
        while len(shape) > 3 and shape[-1] == 1:
            shape = shape[:-1]
        if len(shape) not in (2, 3):
            raise MedattnIOError(
                path, f"unsupported dimensionality: NIfTI of shape {tuple(img.shape)} (2-D or 3-D supported; "
                      "split time series or channels into separate files)"
            )
        if len(shape) == 3:
            check_pixels(path, (shape[1], shape[0]), max_pixels, planes=shape[2])
        else:
            check_pixels(path, (shape[1], shape[0]), max_pixels)
        try:
            data = np.asanyarray(img.dataobj)
        except (EOFError, zlib.error, gzip.BadGzipFile, ValueError, OSError) as exc:
            raise MedattnIOError(path, f"NIfTI file is truncated or corrupt ({_reason(exc)})") from None
        data = data.reshape(shape, order="A")
        arr = data.T  # (x, y, z) Fortran-ordered on disk -> (z, y, x) C-contiguous, no copy
        if not arr.dtype.isnative:
            arr = arr.astype(arr.dtype.newbyteorder("="))
        zooms = tuple(float(z) for z in img.header.get_zooms()[: len(shape)])
        spacing = tuple(reversed(zooms)) if all(z > 0 for z in zooms) else None
        extra: dict[str, Any] = {"nifti_header": img.header.copy(),
                                 "axcodes": tuple(nib.aff2axcodes(img.affine))}
        meta = ImageMeta(spacing=spacing, original_dtype=np.dtype(img.get_data_dtype()).name, source=str(path),
                         format=self.name, layout="ZHW" if arr.ndim == 3 else "HW",
                         affine=np.asarray(img.affine, dtype=np.float64), extra=extra)
        return finalize(path, arr, meta)


@register_writer
class NIfTIWriter(ImageWriter):
    """Writes ``HW``/``ZHW`` arrays; the affine comes from ``meta.affine``, else from ``meta.spacing``."""

    name = "nifti"
    extensions = (".nii", ".nii.gz")

    def write(self, path: Path, array: np.ndarray, meta: ImageMeta | None) -> None:
        import nibabel as nib

        arr = np.asarray(array)
        if arr.dtype == np.bool_:
            arr = arr.astype(np.uint8)
        colour = meta is not None and meta.layout.endswith("C") and len(meta.layout) == arr.ndim
        if arr.ndim not in (2, 3) or colour:
            raise MedattnIOError(path, f"NIfTI writer stores 2-D or 3-D gray arrays; got shape {tuple(arr.shape)}"
                                       + (" (colour)" if colour else ""))
        if arr.dtype == np.float16:
            arr = arr.astype(np.float32)
        affine = None if meta is None else meta.affine
        if affine is None:
            affine = np.eye(4)
            if meta is not None and meta.spacing is not None:
                zooms = list(reversed([float(s) for s in meta.spacing]))
                affine[np.arange(len(zooms)), np.arange(len(zooms))] = zooms
        header = None
        if meta is not None and meta.extra.get("nifti_header") is not None:
            header = meta.extra["nifti_header"].copy()
        img = nib.Nifti1Image(arr.T, np.asarray(affine, dtype=np.float64), header=header)
        img.set_data_dtype(arr.dtype)
        img.header.set_slope_inter(None, None)  # values are written as they are
        if header is None:
            img.set_qform(affine, code=1)
            img.set_sform(affine, code=1)
        with atomic_path(path) as tmp:
            nib.save(img, tmp)


def _npy_layout(shape: tuple[int, ...]) -> str:
    if len(shape) == 2:
        return "HW"
    if len(shape) == 3:
        return "HWC" if shape[-1] in (3, 4) else "ZHW"
    return ""


@register_reader
class NPYReader(ImageReader):
    name = "npy"
    extensions = (".npy",)

    def sniff(self, head: bytes) -> bool:
        return head[:6] == b"\x93NUMPY"

    def read(self, path: Path, max_pixels: int | None) -> ImageData:
        fmt = np.lib.format
        try:
            with open(path, "rb") as fh:
                version = fmt.read_magic(fh)
                read_header = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
                shape, fortran, dtype = read_header(fh)  # header only, no data
                offset = fh.tell()
        except (ValueError, OSError, EOFError, SyntaxError) as exc:
            raise MedattnIOError(path, f"not a valid .npy file ({_reason(exc)})") from None
        shape = tuple(int(s) for s in shape)
        layout = _npy_layout(shape)
        if not layout:
            raise MedattnIOError(path, f"unsupported dimensionality: array of shape {shape} (2-D or 3-D supported)")
        if dtype.kind not in "biuf":
            raise MedattnIOError(path, f"unsupported dtype {dtype} (numeric or bool arrays only)")
        hw = shape[1:3] if layout == "ZHW" else shape[:2]
        check_pixels(path, hw, max_pixels, planes=shape[0] if layout == "ZHW" else 1)
        expected = offset + int(np.prod(shape)) * dtype.itemsize
        size = path.stat().st_size
        if size < expected:
            raise MedattnIOError(path, f".npy file is truncated ({size:,} of {expected:,} bytes)")
        arr = np.fromfile(path, dtype=dtype, count=int(np.prod(shape)), offset=offset)
        arr = arr.reshape(shape, order="F" if fortran else "C")
        if not arr.dtype.isnative:
            arr = arr.astype(arr.dtype.newbyteorder("="))
        meta = ImageMeta(original_dtype=arr.dtype.name, source=str(path), format=self.name, layout=layout)
        return finalize(path, arr, meta)


@register_writer
class NPYWriter(ImageWriter):
    name = "npy"
    extensions = (".npy",)

    def write(self, path: Path, array: np.ndarray, meta: ImageMeta | None) -> None:
        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            np.save(fh, np.asarray(array), allow_pickle=False)
