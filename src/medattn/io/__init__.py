"""Medical image I/O: one reader/writer registry for raster, DICOM, NIfTI and NumPy files.

>>> from medattn.io import read_image, read_gray, read_mask, apply_window  # doctest: +SKIP
>>> img = read_image("ct_slice.dcm")                                          # doctest: +SKIP
>>> img.array.dtype, img.meta.modality, img.meta.spacing                      # doctest: +SKIP
(dtype('float32'), 'CT', (0.78, 0.78))

See docs/io.md for the formats, the metadata contract and the error cases.
"""

from __future__ import annotations

# Importing the format modules registers their readers and writers.
from medattn.io import dicom as _dicom  # noqa: F401
from medattn.io import raster as _raster  # noqa: F401
from medattn.io import tiff as _tiff  # noqa: F401
from medattn.io import volume as _volume  # noqa: F401
from medattn.io.base import (
    DEFAULT_MAX_PIXELS,
    MAX_PIXELS_ENV,
    ImageData,
    ImageMeta,
    ImageReader,
    ImageWriter,
    list_readers,
    register_reader,
    register_writer,
)
from medattn.io.convert import (
    MASK_THRESHOLD,
    read_gray,
    read_mask,
    read_rgb,
    rgb_plus_gray,
    rgb_to_gray,
    to_uint8,
)
from medattn.io.core import read_image, write_image
from medattn.io.dicom import read_dicom_series
from medattn.io.windows import WINDOWS, apply_window

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "MASK_THRESHOLD",
    "MAX_PIXELS_ENV",
    "WINDOWS",
    "ImageData",
    "ImageMeta",
    "ImageReader",
    "ImageWriter",
    "apply_window",
    "list_readers",
    "read_dicom_series",
    "read_gray",
    "read_image",
    "read_mask",
    "read_rgb",
    "register_reader",
    "register_writer",
    "rgb_plus_gray",
    "rgb_to_gray",
    "to_uint8",
    "write_image",
]
