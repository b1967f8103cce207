#!/usr/bin/env bash
# The wheels that let the GPU check run the MMDetection tests on a lent H100/H200, in .whl/
# (ignored by git; the device call names it in `carry`).
#
#   bash scripts/gpu_mmdet_wheels.sh           fill .whl/
#   bash scripts/gpu_mmdet_wheels.sh --check   also install them, with the packages the GPU
#                                              image already has, into the twin of that image
#                                              (.venv-gpu-twin, `make gpu-twin`) and run
#                                              tests/mmdet/test_amp_runner.py there, on the CPU
#
# The GPU image (Python 3.12, torch 2.11 CUDA 13.0, numpy 2) has opencv, scipy, matplotlib,
# rich, pyyaml, pillow, six and tqdm, but no mmcv, mmdet, mmengine, lvis or pycocotools, and
# no network. Everything pure or binary comes from PyPI as cp312 manylinux wheels, pinned to
# the versions of the tested environment (requirements/constraints.txt). mmcv 2.1.0 is an
# sdist: scripts/build_mmcv.py compiles it in the twin, CPU and CUDA ops (sm_90 only, which
# keeps the wheel small; about an hour on 2 cores, cached afterwards).
#
# On the device, before `make gpu-check` (which then also runs test_amp_runner.py):
#   python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
#   export PYTHONPATH=/tmp/site
set -euo pipefail
cd "$(dirname "$0")/.."
WHEELS=.whl
TWIN=.venv-gpu-twin/bin/python
mkdir -p "$WHEELS"

pinned() { grep -i "^$1==" requirements/constraints.txt; }
download() {
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d "$1" "${@:2}"
}

# missing on the GPU image: the MMDetection stack and what it needs beyond the image
MISSING="mmengine mmdet lvis pycocotools shapely terminaltables addict yapf termcolor platformdirs"
# shellcheck disable=SC2046
download "$WHEELS" $(for p in $MISSING; do pinned "$p"; done)

[ -x "$TWIN" ] || bash scripts/setup_twin.sh requirements/gpu-twin.txt .venv-gpu-twin
"$TWIN" scripts/build_mmcv.py --version 2.1.0 --cuda-arch 9.0 --wheel-dir "$WHEELS"
ls -l "$WHEELS"
du -sh "$WHEELS"

if [ "${1:-}" = "--check" ]; then
  # what the image has and the twin lacks, the newest cp312 wheels, for the twin only: they do
  # not go to the device (the twin's fasa_fast is the repo, installed editable by gpu-twin)
  extra=$(mktemp -d)
  site=$(mktemp -d)
  download "$extra" "opencv-python-headless<5" matplotlib contourpy cycler fonttools kiwisolver \
    pyparsing python-dateutil rich markdown-it-py mdurl pygments pyyaml pillow six tqdm
  "$TWIN" -m pip install -q --no-index --no-deps --no-compile --target "$site" \
    "$WHEELS"/*.whl "$extra"/*.whl
  PYTHONPATH="$site" "$TWIN" -m pytest tests/mmdet/test_amp_runner.py -q -p no:cacheprovider
fi
