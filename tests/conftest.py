"""Shared fixtures: the real datasets in ../shared/data, a CLI runner, small threads."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from medattn.utils.paths import shared_data_root

# Two cores: keep each test process from oversubscribing them.
os.environ.setdefault("OMP_NUM_THREADS", "1")
try:
    import torch

    torch.set_num_threads(1)
except ImportError:  # metrics and io tests run without torch
    pass


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Root of ../shared/data; skips the test with a reason when it is absent."""
    root = shared_data_root()
    if root is None:
        pytest.skip("../shared/data is not available (set MEDATTN_DATA to the datasets folder)")
    return root


@pytest.fixture
def run_cli(capsys):
    """Run ``medattn ARGS...`` in-process; returns (exit_code, stdout, stderr)."""
    from medattn.cli.main import main

    def _run(*args: str) -> tuple[int, str, str]:
        code = main([str(a) for a in args])
        out = capsys.readouterr()
        return code, out.out, out.err

    return _run
