"""Atomic file writes: write to a temporary file beside the target, then rename.

A crash or a killed process never leaves a half-written result: readers see
either the old file or the complete new one. :func:`file_sha256` fingerprints a
written file (weights in results tables and model cards).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str], suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; rename it onto ``target`` on success.

    ``suffix`` defaults to the target's own suffixes so that writers that pick
    a format from the file name (Pillow, nibabel) still work. On an exception
    the temporary file is removed and the target is left untouched.

    >>> with atomic_path("/tmp/medattn-doc.txt") as tmp:
    ...     _ = tmp.write_text("done")
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    if suffix is None:
        suffix = "".join(target.suffixes) or ".tmp"
    fd, name = tempfile.mkstemp(prefix=f".{target.stem}.", suffix=suffix, dir=target.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        # mkstemp creates 0600 files: give the result the mode a plain open() would
        # (or the replaced file's own mode).
        mode = target.stat().st_mode & 0o7777 if target.exists() else 0o666 & ~_umask()
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def atomic_write_bytes(target: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``target`` atomically and return the target path."""
    with atomic_path(target) as tmp, open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    return Path(target)


def atomic_write_text(target: str | os.PathLike[str], text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``target`` atomically and return the target path."""
    return atomic_write_bytes(target, text.encode(encoding))


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of the file at ``path``, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
