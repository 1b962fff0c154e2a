#!/usr/bin/env bash
# Build the wheels of sipppy and of the given backend packages on this machine, then check
# each backend wheel's payload by installing it into a throwaway virtual environment.
#
#   scripts/build_wheels.sh                 # sipppy + sipppy-backend-cpu
#   scripts/build_wheels.sh cpu cuda        # ... + sipppy-backend-cuda
#
# Environment:
#   OUT                      wheel folder (default: dist)
#   SIPP_BUILD_MODE          release (default here: every CPU variant, GGML_BACKEND_DL) or native
#   SIPP_BUILD_JOBS          parallel compile jobs (default: CPU count)
#   SIPP_CUDA_ARCHITECTURES  CUDA architectures, verbatim to CMake (default: the portable list)
#   PYTHON                   interpreter with pip (default: .venv/bin/python, else python3)
# Native builds are cached (~/.cache/sipppy/build): a repeated run packs wheels in seconds.
# Release wheels for every platform come from cibuildwheel (.github/workflows/wheels.yml).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
OUT=${OUT:-dist}
PY=${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}
export SIPP_BUILD_MODE=${SIPP_BUILD_MODE:-release}
backends=("$@")
[ ${#backends[@]} -eq 0 ] && backends=(cpu)
for b in "${backends[@]}"; do
    case "$b" in cpu|cuda|vulkan|metal) ;;
        *) echo "unknown backend '$b' (expected cpu, cuda, vulkan or metal)" >&2; exit 2;;
    esac
done
mkdir -p "$OUT"

timed() {  # timed <label> <command...>
    local label=$1 start=$SECONDS
    shift
    printf '\n== %s\n' "$label" >&2
    "$@"
    printf '== %s: %ss\n' "$label" "$((SECONDS - start))" >&2
}

timed "wheel: sipppy" "$PY" -m pip wheel --no-deps --quiet -w "$OUT" .
for b in "${backends[@]}"; do
    timed "wheel: sipppy-backend-$b ($SIPP_BUILD_MODE)" \
        "$PY" -m pip wheel --no-deps -w "$OUT" "./sipp_backend_$b"
done

check_env=$(mktemp -d)
trap 'rm -rf "$check_env"' EXIT
"$PY" -m venv "$check_env"
for b in "${backends[@]}"; do
    wheel=$(ls -t "$OUT"/sipppy_backend_"$b"-*.whl | head -n 1)
    timed "check: $wheel" bash -c '
        "$1/bin/pip" install --quiet --no-deps --force-reinstall "$2" &&
        "$1/bin/python" build_scripts/check_backend_install.py "$3" --mode "$4"' \
        _ "$check_env" "$wheel" "$b" "$SIPP_BUILD_MODE"
done
ls -l "$OUT"/*.whl
