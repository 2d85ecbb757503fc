"""Where the shared datasets live.

The real datasets sit in ``../shared/data`` beside the repository checkout.
``MEDATTN_DATA`` overrides that location.
"""

from __future__ import annotations

import os
from pathlib import Path

_REPO_ROOT = Path(__file__).resolve().parents[3]


def shared_data_root() -> Path | None:
    """Return the shared data folder, or ``None`` when it is not available."""
    env = os.environ.get("MEDATTN_DATA")
    candidates = [Path(env)] if env else []
    candidates += [_REPO_ROOT.parent / "shared" / "data", Path.cwd().parent / "shared" / "data"]
    for cand in candidates:
        if cand.is_dir():
            return cand.resolve()
    return None
