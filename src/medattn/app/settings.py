"""Application settings: one pydantic object, every default visible here.

Environment variables ``MEDATTN_DB_URL``, ``MEDATTN_DATA_DIR``,
``MEDATTN_MAX_UPLOAD_MB``, ``MEDATTN_MAX_REQUEST_MB``, ``MEDATTN_MAX_PIXELS``, ``MEDATTN_QUEUE_SIZE`` and
``MEDATTN_WORKERS`` override the defaults; command-line options of
``medattn serve`` override those.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from pydantic import BaseModel, Field

from medattn.utils.fileio import atomic_write_text


def default_data_dir() -> Path:
    """The per-user data directory (``~/.local/share/medattn`` on Linux)."""
    env = os.environ.get("MEDATTN_DATA_DIR")
    if env:
        return Path(env).expanduser()
    from platformdirs import user_data_dir

    return Path(user_data_dir("medattn", appauthor=False))


class AppSettings(BaseModel):
    """Settings of one running application instance."""

    data_dir: Path = Field(default_factory=default_data_dir, description="case files, SQLite database, secret key")
    db_url: str | None = Field(None, description="SQLAlchemy URL; default sqlite:///<data_dir>/medattn.db")
    max_upload_mb: float = Field(200.0, gt=0, description="largest accepted upload (one file), in MB")
    max_request_mb: float = Field(400.0, gt=0, description="largest request body (all files together), in MB; "
                                  "checked on Content-Length before anything is read")
    max_pixels: int = Field(100_000_000, gt=0, description="largest accepted image, in pixels (decompression bombs)")
    queue_size: int = Field(32, ge=1, description="jobs waiting at most; further uploads get HTTP 503")
    workers: int = Field(1, ge=1, description="inference worker threads")
    session_max_age: int = Field(8 * 3600, description="seconds a sign-in lasts")
    login_max_failures: int = Field(5, ge=1, description="failed sign-ins per account before HTTP 429")
    login_max_failures_address: int = Field(20, ge=1, description="failed sign-ins per client address before 429")
    login_window_s: float = Field(900.0, gt=0, description="seconds a failed sign-in counts for throttling")
    secure_cookies: bool = Field(False, description="set the Secure flag (behind HTTPS)")
    keep_file_names: bool = Field(False, description="keep uploaded file names (patient data in many sites' "
                                  "naming); default: inputs stored as <case id>-<n>.<ext>")

    @classmethod
    def from_env(cls, **overrides: object) -> AppSettings:
        env = {
            "db_url": os.environ.get("MEDATTN_DB_URL"),
            "max_upload_mb": os.environ.get("MEDATTN_MAX_UPLOAD_MB"),
            "max_request_mb": os.environ.get("MEDATTN_MAX_REQUEST_MB"),
            "max_pixels": os.environ.get("MEDATTN_MAX_PIXELS"),
            "queue_size": os.environ.get("MEDATTN_QUEUE_SIZE"),
            "workers": os.environ.get("MEDATTN_WORKERS"),
        }
        values = {k: v for k, v in env.items() if v is not None}
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    @property
    def database_url(self) -> str:
        return self.db_url or f"sqlite:///{self.data_dir / 'medattn.db'}"

    @property
    def cases_dir(self) -> Path:
        return self.data_dir / "cases"

    @property
    def models_dir(self) -> Path:
        """Checkpoints (``*.safetensors`` + ``.json`` card) dropped here appear in the pipelines."""
        return self.data_dir / "models"

    @property
    def tmp_dir(self) -> Path:
        """Job scratch folders (``medattn-case-*``); emptied at every start (a killed job leaves its own)."""
        return self.data_dir / "tmp"

    def ensure_dirs(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        self.cases_dir.mkdir(parents=True, exist_ok=True)
        self.models_dir.mkdir(parents=True, exist_ok=True)

    def secret_key(self) -> str:
        """The signing key for sessions and UID remapping, created once with mode 0600."""
        self.ensure_dirs()
        path = self.data_dir / "secret_key"
        if not path.exists():
            atomic_write_text(path, secrets.token_urlsafe(48))
            path.chmod(0o600)
        return path.read_text().strip()
