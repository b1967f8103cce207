#!/usr/bin/env bash
# Creates or updates .venv-torch21/: the mainstream MMDetection stack (Python 3.10, torch 2.1.2,
# torchvision 0.16.2, mmcv 2.1.0, mmengine 0.10.7, mmdet 3.3.0; requirements/mmdet-torch21.txt),
# the one OpenMMLab ships prebuilt mmcv wheels for. Idempotent; a second run takes seconds.
#  1. the pinned packages (scripts/setup_twin.sh; ~5 GB of wheels the first time, torch 2.1.2
#     being PyPI's CUDA 12.1 build);
#  2. mmcv 2.1.0 with its CPU ops, compiled once against this torch from the sdist by
#     scripts/build_mmcv.py and cached under ${FASA_FAST_CACHE:-~/.cache/fasa_fast} (the
#     prebuilt cu121 wheels live on OpenMMLab's own index, which this machine cannot reach);
#  3. fasa_fast itself is built by the test run (`make mainstream`: scripts/gpu_check.sh --dry).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv-torch21}
bash scripts/setup_twin.sh requirements/mmdet-torch21.txt "$VENV"
"$VENV/bin/python" scripts/build_mmcv.py --version 2.1.0
