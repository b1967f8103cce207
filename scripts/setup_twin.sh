#!/usr/bin/env bash
# Creates or updates a twin environment: another interpreter and pinned package set beside the
# project's .venv, in which the code is built and tested as it will run elsewhere.
#   bash scripts/setup_twin.sh requirements/gpu-twin.txt .venv-gpu-twin   (the GPU machine's software)
#   bash scripts/setup_twin.sh requirements/oldest.txt .venv-oldest       (the oldest supported pair)
# The requirements file names its Python as a comment line `# python: X.Y`. The interpreter is
# taken from $TWIN_PYTHON, else pyenv's newest X.Y, else pythonX.Y on PATH; a missing one is an
# error that says so (the package index cannot provide interpreters). Idempotent: the packages
# are installed again only when the requirements file or this script changed.
set -euo pipefail
cd "$(dirname "$0")/.."
REQ=${1:?usage: setup_twin.sh REQUIREMENTS VENV}
VENV=${2:?usage: setup_twin.sh REQUIREMENTS VENV}
log() { echo "[setup_twin] $*" >&2; }

want=$(sed -n 's/^# python: *//p' "$REQ")
if [ -z "$want" ]; then
  log "$REQ: expected a line '# python: X.Y' naming the interpreter"
  exit 2
fi
find_python() {
  if [ -n "${TWIN_PYTHON:-}" ]; then echo "$TWIN_PYTHON"; return; fi
  local root=${PYENV_ROOT:-$HOME/.pyenv} candidate=""
  for dir in "$root"/versions/"$want".*; do
    [ -x "$dir/bin/python" ] && candidate="$dir/bin/python"
  done
  if [ -n "$candidate" ]; then echo "$candidate"; return; fi
  command -v "python$want" || true
}

# One set-up of a venv at a time (.ci/run starts some ahead, in the background): a second caller
# waits here, then finds the stamp written and returns.
exec 9> "$VENV.lock"
flock 9

hash=$(cat "$REQ" scripts/setup_twin.sh | sha256sum | cut -d' ' -f1)
if [ -x "$VENV/bin/python" ] && [ "$(cat "$VENV/.stamp-packages" 2>/dev/null)" = "$hash" ]; then
  log "$VENV up to date ($("$VENV/bin/python" -c 'import sys, torch; print(sys.version.split()[0], "torch", torch.__version__)'))"
  exit 0
fi
python=$(find_python)
if [ -z "$python" ]; then
  log "Python $want not found (pyenv versions, python$want on PATH, or set TWIN_PYTHON): cannot build $VENV"
  exit 2
fi
log "creating $VENV with $("$python" --version) from $REQ (first time: a few GB of wheels)"
rm -rf "$VENV"
"$python" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade "pip==25.3"
# only the pinned packages and what they depend on; no project constraints (another torch)
PIP_CONSTRAINT= "$VENV/bin/python" -m pip install --quiet -r "$REQ"
echo "$hash" > "$VENV/.stamp-packages"
log "$VENV ready"
