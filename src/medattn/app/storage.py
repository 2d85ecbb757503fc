"""Case files on disk: ``<data_dir>/cases/<case id>/<name>``, written atomically.

A finished case's files are all on disk before the database row says
``done`` (the worker writes files first, then commits), so a killed server
never shows a case whose files are missing or half-written.
"""

from __future__ import annotations

import mimetypes
import re
import shutil
from pathlib import Path

from sqlalchemy.orm import Session

from medattn.app.db import Case, CaseFile
from medattn.utils.fileio import atomic_path, atomic_write_bytes

_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_name(name: str, default: str = "file") -> str:
    """A file name without directories or odd characters (``../x y.png`` -> ``x_y.png``)."""
    base = Path(name.replace("\\", "/")).name
    base = _SAFE.sub("_", base).strip("._")
    return base[:120] or default


class CaseStore:
    """Case folders under ``root``; job scratch folders under ``tmp_root`` (default ``root/../tmp``)."""

    def __init__(self, root: Path, tmp_root: Path | None = None) -> None:
        self.root = root
        self.tmp_root = tmp_root or root.parent / "tmp"
        root.mkdir(parents=True, exist_ok=True)

    def scratch_dir(self) -> Path:
        """Where a job makes its temporary folder (``tempfile.TemporaryDirectory(dir=...)``)."""
        self.tmp_root.mkdir(parents=True, exist_ok=True)
        return self.tmp_root

    def sweep_scratch(self) -> int:
        """Remove the scratch folders a killed server left behind (call at start); returns how many."""
        if not self.tmp_root.is_dir():
            return 0
        stale = [p for p in self.tmp_root.iterdir() if p.name.startswith("medattn-")]
        for p in stale:
            if p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)
        return len(stale)

    def case_dir(self, case_id: str) -> Path:
        d = self.root / case_id
        d.mkdir(parents=True, exist_ok=True)
        return d

    def path(self, case_id: str, name: str) -> Path:
        return self.root / case_id / safe_name(name)

    def add_bytes(self, session: Session, case: Case, kind: str, name: str, data: bytes,
                  media_type: str | None = None) -> CaseFile:
        target = self.case_dir(case.id) / safe_name(name)
        atomic_write_bytes(target, data)
        return self._record(session, case, kind, target, media_type)

    def add_file(self, session: Session, case: Case, kind: str, src: Path, name: str | None = None,
                 media_type: str | None = None) -> CaseFile:
        target = self.case_dir(case.id) / safe_name(name or src.name)
        if src.resolve() != target.resolve():
            with atomic_path(target) as tmp:
                shutil.copyfile(src, tmp)
        return self._record(session, case, kind, target, media_type)

    def _record(self, session: Session, case: Case, kind: str, target: Path, media_type: str | None) -> CaseFile:
        for old in [f for f in case.files if f.name == target.name]:
            case.files.remove(old)
        mt = media_type or mimetypes.guess_type(target.name)[0] or "application/octet-stream"
        cf = CaseFile(case_id=case.id, kind=kind, name=target.name, media_type=mt, size=target.stat().st_size)
        case.files.append(cf)
        session.flush()
        return cf

    def delete_case(self, case_id: str) -> None:
        shutil.rmtree(self.root / case_id, ignore_errors=True)
