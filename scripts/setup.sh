#!/usr/bin/env bash
# Idempotent set-up of a fresh machine: a virtual environment in .venv with
# medattn and its test tools. CPU by default; for a GPU see README "Install".
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv

pip_install() {
  # pip's "WARNING: Location ..." lines (a path it cannot index) are noise here: drop them,
  # show everything else, and keep pip's exit status (pipefail; grep finding nothing is fine).
  .venv/bin/pip install -q "$@" 2>&1 | { grep -v '^WARNING: Location' || true; }
}

if [ -n "${MEDATTN_TORCH_SPEC:-}" ]; then
  # e.g. MEDATTN_TORCH_SPEC="torch --index-url https://download.pytorch.org/whl/cu124"
  # shellcheck disable=SC2086  # the spec is several words on purpose
  pip_install $MEDATTN_TORCH_SPEC
elif ! .venv/bin/python -c "import torch" 2>/dev/null; then
  # The local CPU build, pinned exactly: a looser requirement pulls a CUDA build of several GB.
  pip_install torch==2.13.0
fi
pip_install -e ".[dev]"
.venv/bin/python -c "import medattn, torch; print(f'medattn {medattn.__version__} ready (torch {torch.__version__})')"
