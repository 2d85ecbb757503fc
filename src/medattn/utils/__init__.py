"""Small shared helpers (atomic file writes, data-root discovery)."""

from medattn.utils.fileio import atomic_path, atomic_write_bytes, atomic_write_text
from medattn.utils.paths import shared_data_root

__all__ = ["atomic_path", "atomic_write_bytes", "atomic_write_text", "shared_data_root"]
