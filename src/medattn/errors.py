"""Exception hierarchy.

Every error a user can cause derives from :class:`MedattnError`; the command
line prints such an error as one line (``error: <message>``) and exits with a
non-zero code instead of showing a traceback.
"""

from __future__ import annotations

from os import PathLike


class MedattnError(Exception):
    """Base class of all errors caused by user input (files, configs, options)."""


class MedattnIOError(MedattnError):
    """A file could not be read or written.

    The message always names the file and the problem, e.g.
    ``/data/a.dcm: DICOM file has no pixel data``.
    """

    def __init__(self, path: str | PathLike[str] | None, problem: str) -> None:
        self.path = None if path is None else str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}" if self.path else problem)


class DatasetError(MedattnError):
    """A dataset folder has an unknown layout or inconsistent content."""


class ConfigError(MedattnError):
    """A configuration file or option is invalid."""
