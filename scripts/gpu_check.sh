#!/usr/bin/env bash
# The whole GPU check in one command, for a lent H100/H200 (fits one 10-minute device call):
# builds the CUDA extension with the machine's own torch, runs the CUDA/Triton tests and the op
# benchmarks on the GPU, and writes everything into one folder ($OUT there, else results/gpu).
#   device run:  bash scripts/gpu_check.sh
# The GPU image has torch, triton, pytest, pytest-benchmark and hypothesis but no mmcv/mmdet,
# so only the tests marked `cuda` and the CUDA benchmarks run there.
set -uo pipefail
cd "$(dirname "$0")/.."
RESULTS=${OUT:-results/gpu}
mkdir -p "$RESULTS"
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1 TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0}
{
  date -u
  git rev-parse HEAD 2>/dev/null || echo "commit: unknown"
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv
  "$PY" -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__, torch.cuda.get_device_name())"
} > "$RESULTS/machine.txt" 2>&1
cat "$RESULTS/machine.txt"

echo "== build"
start=$(date +%s)
if ! "$PY" setup.py build_ext --inplace > "$RESULTS/build.log" 2>&1; then
  tail -40 "$RESULTS/build.log"
  exit 1
fi
echo "built in $(($(date +%s) - start)) s"

echo "== CUDA / Triton tests"
"$PY" -m pytest tests -m cuda -q -p no:cacheprovider 2>&1 | tee "$RESULTS/tests_cuda.log" | tail -25
tests_rc=${PIPESTATUS[0]}

echo "== GPU benchmarks"
"$PY" -m pytest benchmarks/ --benchmark-only -k cuda -q -p no:cacheprovider \
  --benchmark-columns=min,median,mean,rounds \
  --benchmark-json="$RESULTS/benchmarks_gpu.json" 2>&1 | tee "$RESULTS/benchmarks.log" | tail -30
bench_rc=${PIPESTATUS[0]}
echo "tests rc=$tests_rc benchmarks rc=$bench_rc; results in $RESULTS"
exit $((tests_rc || bench_rc))
