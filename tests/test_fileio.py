"""Atomic writes: all or nothing, and the usual file mode."""

from __future__ import annotations

import hashlib
import os

import pytest

from medattn.utils.fileio import atomic_path, atomic_write_bytes, atomic_write_text, file_sha256


def test_atomic_write_replaces_whole_file(tmp_path):
    target = tmp_path / "a" / "b.txt"
    atomic_write_text(target, "first")
    atomic_write_text(target, "second")
    assert target.read_text() == "second"
    assert [p.name for p in target.parent.iterdir()] == ["b.txt"]


def test_failure_leaves_target_and_no_temp(tmp_path):
    target = tmp_path / "keep.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]


def test_mode_follows_umask_not_mkstemp(tmp_path):
    old = os.umask(0o022)
    try:
        new = atomic_write_text(tmp_path / "new.txt", "x")
        assert new.stat().st_mode & 0o777 == 0o644
        exe = tmp_path / "kept.sh"
        exe.write_text("#!/bin/sh\n")
        exe.chmod(0o750)
        atomic_write_text(exe, "#!/bin/sh\necho hi\n")
        assert exe.stat().st_mode & 0o777 == 0o750
    finally:
        os.umask(old)


def test_save_figure_png_is_a_small_palette_png(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    from medattn.utils.figures import save_figure_png

    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    path = save_figure_png(fig, tmp_path / "f.png")
    assert Image.open(path).mode == "P"
    assert not plt.fignum_exists(fig.number)
    assert [p.name for p in tmp_path.iterdir()] == ["f.png"]


def test_file_sha256_reads_the_whole_file(tmp_path):
    data = os.urandom(3 * 2**20 + 17)  # more than one 1 MiB chunk, not a multiple of it
    path = atomic_write_bytes(tmp_path / "w.bin", data)
    assert file_sha256(path) == hashlib.sha256(data).hexdigest()
    atomic_write_bytes(path, data[:-1])
    assert file_sha256(path) != hashlib.sha256(data).hexdigest()
