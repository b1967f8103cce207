#!/usr/bin/env bash
# Creates or updates the project environment in .venv/ at the repo root; idempotent.
#  1. .venv with the pinned packages of requirements/env.txt + constraints.txt;
#  2. mmcv 2.1.0 with compiled ops (scripts/build_mmcv.py; the wheel is cached under
#     ${FASA_FAST_CACHE:-~/.cache/fasa_fast}, so only a new machine pays its ~6 min build);
#  3. fasa_fast itself, `pip install -e . --no-build-isolation` (C++ and, when a CUDA toolkit
#     is found, CUDA kernels).
# Each step is skipped when the hash of its inputs matches the stamp it left last time, so a
# second run takes seconds. PYTHON selects the interpreter that creates the venv (3.10+).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
VENV="$ROOT/.venv"
PY="$VENV/bin/python"
log() { echo "[setup_env] $*" >&2; }

stamp_ok() { [ -f "$VENV/.stamp-$1" ] && [ "$(cat "$VENV/.stamp-$1")" = "$2" ]; }
stamp_set() { echo "$2" > "$VENV/.stamp-$1"; }
hash_of() { cat "$@" | sha256sum | cut -d' ' -f1; }

if [ ! -x "$PY" ]; then
  log "creating $VENV"
  "${PYTHON:-python3}" -m venv "$VENV"
fi

req_hash=$(hash_of requirements/env.txt requirements/constraints.txt scripts/setup_env.sh)
if ! stamp_ok packages "$req_hash"; then
  log "installing pinned packages (first time: a few minutes)"
  "$PY" -m pip install --quiet --upgrade "pip==25.3"
  "$PY" -m pip install --quiet -r requirements/env.txt -c requirements/constraints.txt
  stamp_set packages "$req_hash"
fi

mmcv_hash=$(hash_of scripts/build_mmcv.py requirements/constraints.txt)
if ! stamp_ok mmcv "$mmcv_hash"; then
  "$PY" scripts/build_mmcv.py --version 2.1.0
  stamp_set mmcv "$mmcv_hash"
fi

ext_hash=$(find csrc -type f -not -path '*/__pycache__/*' | LC_ALL=C sort | xargs cat setup.py pyproject.toml | sha256sum | cut -d' ' -f1)
ext_hash="$ext_hash-${FORCE_CUDA:-}-${TORCH_CUDA_ARCH_LIST:-}"
so=fasa_fast/_C$("$PY" -c 'import sysconfig; print(sysconfig.get_config_var("EXT_SUFFIX"))')
# Each build is also kept outside the clone, keyed by the C++/CUDA sources, the settings, the Python ABI
# and torch: a new clone of unchanged sources (CI) installs that library instead of compiling
# it again (FASA_FAST_PREBUILT=1 tells setup.py not to build).
abi=$("$PY" -c 'import sysconfig, torch; print(sysconfig.get_config_var("EXT_SUFFIX"), torch.__version__)')
cache="${FASA_FAST_CACHE:-$HOME/.cache/fasa_fast}/ext-env/$(echo "$ext_hash $abi" | sha256sum | cut -d' ' -f1)"
if ! stamp_ok extension "$ext_hash" || [ ! -f "$so" ]; then
  if [ -f "$cache/$(basename "$so")" ]; then
    log "installing fasa_fast with the extension built earlier from these sources ($cache)"
    cp "$cache/$(basename "$so")" "$so"
    FASA_FAST_PREBUILT=1 "$PY" -m pip install --quiet --no-build-isolation --no-deps -e .
  else
    log "building fasa_fast (pip install -e .): C++ kernels, and CUDA kernels if a toolkit is found"
    "$PY" -m pip install --quiet --no-build-isolation --no-deps -e .
    mkdir -p "$cache" && cp "$so" "$cache/"
  fi
  stamp_set extension "$ext_hash"
fi
log "environment ready: $VENV"
