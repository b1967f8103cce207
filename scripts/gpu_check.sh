#!/usr/bin/env bash
# The whole GPU check in one command. Writes everything into one folder ($OUT, else
# results/gpu[-dry]); fits one 10-minute device call.
#
#   bash scripts/gpu_check.sh            on a lent H100/H200 (`make gpu-check`): builds the
#                                        extension with its CUDA objects against the machine's
#                                        torch, runs the tests marked `cuda` and the benchmarks
#                                        on the GPU;
#   bash scripts/gpu_check.sh --dry      everything that needs no device, in the twin of the GPU
#                                        machine's software (`make gpu-twin`, run by
#                                        `make test`): the same build, the imports, the
#                                        non-mmdet suite (Triton under its interpreter) and the
#                                        benchmarks in quick mode.
#
# The GPU image has Python 3.12, torch 2.11 (CUDA 13.0), triton 3.6, numpy 2.x, pytest,
# pytest-benchmark, hypothesis, scikit-learn; no mmcv/mmdet/lvis, no package index, no network.
# So the package is installed offline (--no-index --no-build-isolation --no-deps) as users
# install it, `pip install -e .`, which also maps kernels/ to fasa_fast.kernels (a bare
# `setup.py build_ext --inplace` would not). PYTHON picks the interpreter; outside a virtual
# environment a venv with --system-site-packages is made in .venv-gpu/ to install into.
# The copy on a device machine has no .git: pass the commit as FASA_FAST_COMMIT.
set -uo pipefail
cd "$(dirname "$0")/.."
DRY=0
[ "${1:-}" = "--dry" ] && DRY=1
RESULTS=${OUT:-results/gpu$([ $DRY = 1 ] && echo -dry)}
mkdir -p "$RESULTS"
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1 TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0}
commit=${FASA_FAST_COMMIT:-$(git rev-parse HEAD 2>/dev/null || echo unknown)}

if [ "$("$PY" -c 'import sys; print(int(sys.prefix != sys.base_prefix))')" = 0 ]; then
  "$PY" -m venv --system-site-packages .venv-gpu && PY=.venv-gpu/bin/python
fi

{
  echo "date: $(date -u +%FT%TZ)"
  echo "commit: $commit"
  echo "mode: $([ $DRY = 1 ] && echo 'dry (no GPU: build, imports, tests, quick benchmarks)' || echo gpu)"
  if [ $DRY = 0 ]; then
    nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv
  fi
  "$PY" - <<'PYEOF'
import os, platform, shutil, subprocess, torch
try:
    import triton
    triton_version = triton.__version__
except ImportError:
    triton_version = "not installed"
print("python", platform.python_version(), "torch", torch.__version__, "cuda", torch.version.cuda,
      "triton", triton_version)
nvcc = shutil.which("nvcc")
if nvcc:
    release = subprocess.run([nvcc, "--version"], capture_output=True, text=True).stdout
    release = [l for l in release.splitlines() if "release" in l][0].split("release ")[1].split(",")[0]
    print("nvcc", release)
    if os.environ.get("FORCE_CUDA") == "0":
        print("FORCE_CUDA=0: the extension is built without its CUDA objects")
    elif torch.version.cuda and torch.version.cuda.split(".")[0] != release.split(".")[0]:
        print(f"NOTE: torch is built for CUDA {torch.version.cuda} but nvcc is {release}: "
              "torch refuses to compile CUDA objects across major versions; build with "
              "FORCE_CUDA=0, or with the pinned torch, whose CUDA matches")
if torch.cuda.is_available():
    print("device", torch.cuda.get_device_name())
PYEOF
} > "$RESULTS/machine.txt" 2>&1
cat "$RESULTS/machine.txt"

echo "== build (pip install -e ., offline)"
start=$(date +%s)
venv=$("$PY" -c 'import sys; print(sys.prefix)')
ext_hash=$( (find csrc -type f -not -path '*/__pycache__/*' | LC_ALL=C sort | xargs cat setup.py pyproject.toml
  echo "$TORCH_CUDA_ARCH_LIST ${FORCE_CUDA:-}"
  "$PY" -c 'import sysconfig, torch; print(sysconfig.get_config_var("EXT_SUFFIX"), torch.__version__)') | sha256sum | cut -d' ' -f1)
so=$("$PY" -c 'import sysconfig; print("fasa_fast/_C" + sysconfig.get_config_var("EXT_SUFFIX"))')
# Dry mode keeps each build in a cache outside the clone, keyed by the hash of every C++/CUDA
# source (the Triton kernels are Python, not in the library), the build settings, the Python ABI
# and the torch version: a fresh clone of unchanged sources (CI) reuses the extension this
# script built from them instead of compiling it for minutes again.
cache=${FASA_FAST_CACHE:-$HOME/.cache/fasa_fast}/ext/$ext_hash
# the stamp holds the source hash and the library's own hash: another environment with the same
# Python ABI (another torch) writes the same file name
stamp() { echo "$ext_hash $(sha256sum "$so" | cut -d' ' -f1)"; }
if [ $DRY = 1 ] && [ -f "$so" ] && [ "$(cat "$venv/.stamp-extension" 2>/dev/null)" = "$(stamp)" ]; then
  echo "extension up to date ($so)"
elif [ $DRY = 1 ] && [ -f "$cache/$(basename "$so")" ]; then
  cp "$cache/$(basename "$so")" "$so"
  if ! FASA_FAST_PREBUILT=1 "$PY" -m pip install --no-index --no-build-isolation --no-deps -e . > "$RESULTS/build.log" 2>&1; then
    tail -40 "$RESULTS/build.log"
    exit 1
  fi
  stamp > "$venv/.stamp-extension"
  echo "extension of these sources taken from $cache (built there by this script earlier)"
else
  if ! "$PY" -m pip install --no-index --no-build-isolation --no-deps -e . > "$RESULTS/build.log" 2>&1; then
    tail -40 "$RESULTS/build.log"
    exit 1
  fi
  stamp > "$venv/.stamp-extension"
  if [ $DRY = 1 ]; then
    mkdir -p "$cache" && cp "$so" "$cache/"
  fi
  echo "built in $(($(date +%s) - start)) s"
fi

echo "== imports"
if ! "$PY" - <<'PYEOF' 2>&1 | tee "$RESULTS/imports.log"; then
import torch, fasa_fast, fasa_fast.kernels
from fasa_fast.ops import _library
from fasa_fast._extension import extension_path
assert fasa_fast.extension_loaded(), fasa_fast.extension_error()
assert _library.native_available("cpu"), "the extension registered no CPU kernels"
import os
cuda_built = torch.version.cuda is not None and os.environ.get("FORCE_CUDA") != "0"
# the dispatcher's CUDA kernel: the extension's (csrc/...) when it was built with CUDA, else the
# Python backend the policy registered in its place
dump = torch._C._dispatch_dump("fasa_fast::fisher_distance")
cuda_line = [line for line in dump.splitlines() if line.startswith("CUDA:")]
native_cuda = bool(cuda_line) and "csrc/" in cuda_line[0]
assert native_cuda == cuda_built, (
    f"CUDA kernels of the extension: expected {'some' if cuda_built else 'none'} (torch CUDA "
    f"{torch.version.cuda}, FORCE_CUDA={os.environ.get('FORCE_CUDA')}), got {cuda_line}")
print("extension", extension_path())
print("triton kernels", fasa_fast.kernels.__file__, "available:", _library.triton_available())
print("backends: cpu", _library.get_backend("cpu"), "cuda", _library.get_backend("cuda"))
PYEOF
  exit 1
fi

if [ $DRY = 1 ]; then
  echo "== test suite: ${DRY_TESTS:-tests --ignore=tests/mmdet} (Triton under its interpreter)"
  # DRY_TESTS narrows the selection (make oldest runs the API-dependent part only)
  # shellcheck disable=SC2086
  "$PY" -m pytest ${DRY_TESTS:-tests --ignore=tests/mmdet} -q -p no:cacheprovider 2>&1 \
    | tee "$RESULTS/tests.log" | tail -15
  tests_rc=${PIPESTATUS[0]}
  echo "== benchmarks, quick mode"
  "$PY" -m pytest benchmarks/ --benchmark-only --quick -q -p no:cacheprovider \
    --benchmark-json="$RESULTS/benchmarks_quick.json" 2>&1 | tee "$RESULTS/benchmarks.log" | tail -5
  bench_rc=${PIPESTATUS[0]}
else
  echo "== CUDA / Triton tests"
  "$PY" -m pytest tests -m cuda -q -p no:cacheprovider 2>&1 | tee "$RESULTS/tests_cuda.log" | tail -25
  tests_rc=${PIPESTATUS[0]}
  echo "== GPU benchmarks"
  # one quick pass first: Triton's JIT compiles every kernel there, not in a timed round
  "$PY" -m pytest benchmarks/ --benchmark-only -k cuda --quick -q -p no:cacheprovider \
    > "$RESULTS/warmup.log" 2>&1
  "$PY" -m pytest benchmarks/ --benchmark-only -k cuda -q -p no:cacheprovider \
    --benchmark-columns=min,median,mean,rounds \
    --benchmark-json="$RESULTS/benchmarks_gpu.json" 2>&1 | tee "$RESULTS/benchmarks.log" | tail -30
  bench_rc=${PIPESTATUS[0]}
  # with the MMDetection stack carried as wheels (scripts/gpu_mmdet_wheels.sh, on PYTHONPATH):
  # tools/train.py --amp with the FASA box head, fp16 and bf16
  if "$PY" -c "import mmdet, mmcv.ops" > /dev/null 2>&1; then
    echo "== tools/train.py --amp with the mmdet heads"
    "$PY" -m pytest tests/mmdet/test_amp_runner.py -q -p no:cacheprovider 2>&1 \
      | tee "$RESULTS/amp_runner.log" | tail -8
    amp_rc=${PIPESTATUS[0]}
    tests_rc=$((tests_rc || amp_rc))
  else
    echo "== no mmdet/mmcv here: tools/train.py --amp with the mmdet heads not run" \
      "(scripts/gpu_mmdet_wheels.sh)"
  fi
fi
echo "tests rc=$tests_rc benchmarks rc=$bench_rc; results in $RESULTS"
exit $((tests_rc || bench_rc))
