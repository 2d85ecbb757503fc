"""De-identified names for uploads: a file name such as ``Doe_Johnathan_PID-7734219.dcm``
is patient data, so by default it is kept neither on disk, nor in the database,
nor in the report. A case's inputs are stored as ``<case id>-<n><extension>``
and the case is labelled by its id; ``medattn serve --keep-file-names``
(setting ``keep_file_names``) keeps the uploaded names for sites that need them.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from pathlib import PurePosixPath
from typing import Protocol

_DOUBLE_SUFFIXES = (".nii.gz",)


class NamedCase(Protocol):
    id: str
    title: str | None
    input_name: str


def extension(name: str) -> str:
    """The file type suffix of ``name`` (``.nii.gz`` counts as one), lower case; ``""`` if none."""
    base = PurePosixPath(name.replace("\\", "/")).name.lower()
    for suf in _DOUBLE_SUFFIXES:
        if base.endswith(suf):
            return suf
    return PurePosixPath(base).suffix


def stored_name(case_id: str, index: int, original: str, keep: bool, count: int = 1) -> str:
    """The name input file ``index`` (1-based, of ``count``) of a case is stored under.

    ``<case id>-<index><extension of original>``, the index zero-padded so that the slices of a series
    sort in upload order; the original name itself when ``keep`` is set.
    """
    if keep:
        return original
    return f"{case_id}-{index:0{len(str(count))}d}{extension(original)}"


def name_case_inputs(case: NamedCase, files: Iterable[tuple[str, bytes]], keep: bool,
                     upload_name: str) -> list[tuple[str, bytes]]:
    """Rename a new case's input files and, unless ``keep``, replace the uploaded name in the case record.

    ``case.input_name`` becomes ``<case id><extension>`` and a title that was just the uploaded name
    becomes ``Case <first 8 characters of the id>``; returns the (stored name, bytes) pairs to store.
    Call it before the case is first written, so the uploaded name never reaches the database (not even
    as a stale value in a free database page): a case without an id gets its id here.
    """
    files = list(files)
    if not case.id:
        case.id = str(uuid.uuid4())
    if not keep:
        case.input_name = f"{case.id}{extension(upload_name)}"
        if not case.title or case.title == upload_name:
            case.title = f"Case {case.id[:8]}"
    return [(stored_name(case.id, i, name, keep, len(files)), blob) for i, (name, blob) in enumerate(files, 1)]
