# The two README commands: `make demo` and `make test`. Both create/update .venv first.
PY := .venv/bin/python

.PHONY: env demo test lint bench gpu-check gpu-twin oldest mainstream

env:
	bash scripts/setup_env.sh

demo: env
	$(PY) -m fasa_fast.mmdet.demo

lint: env
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .

test: lint
	$(PY) -m pytest tests/ -q --durations=25
	$(PY) -m pytest benchmarks/ --benchmark-only -q --quick
	$(MAKE) gpu-twin

bench: env
	$(PY) -m pytest benchmarks/ --benchmark-only --benchmark-min-rounds=10 \
		--benchmark-json=benchmarks/results/cpu-$$(date +%F).json

gpu-check:
	bash scripts/gpu_check.sh

# The GPU check's dry mode in a twin of the GPU machine's software (.venv-gpu-twin/, Python 3.12,
# torch 2.11, triton 3.6, numpy 2; requirements/gpu-twin.txt): build, imports, non-mmdet suite,
# quick benchmarks. Results in results/gpu-dry/.
gpu-twin:
	bash scripts/setup_twin.sh requirements/gpu-twin.txt .venv-gpu-twin
	PYTHON=.venv-gpu-twin/bin/python bash scripts/gpu_check.sh --dry

# Mutation testing (mutmut, on a copy of the tree in .mutation/): score per module, docs/reports/mutation.md
.PHONY: mutation
mutation: env
	bash scripts/mutation.sh core

# The oldest pair with the Triton backend (Python 3.10, torch 2.6, triton 3.2;
# requirements/oldest.txt) in .venv-oldest/:
# the CPU extension, the imports and the tests of everything that calls torch's APIs (ops,
# dispatch, op contract, engine, examples, registration paths, `python -m fasa_fast.info`), in
# results/oldest/.
OLDEST_TESTS := tests/test_extension.py tests/test_op_contract.py tests/test_backend_dispatch.py \
	tests/test_segmented_stats_update.py tests/test_sample_virtual_features.py \
	tests/test_fisher_distance.py tests/test_engine.py tests/test_engine_streams.py \
	tests/test_losses.py tests/test_amp.py tests/test_distributed_engine.py tests/test_examples.py \
	tests/test_info.py tests/test_torch_compat.py
oldest:
	bash scripts/setup_twin.sh requirements/oldest.txt .venv-oldest
	FORCE_CUDA=0 PYTHON=.venv-oldest/bin/python OUT=results/oldest DRY_TESTS="$(OLDEST_TESTS)" \
		bash scripts/gpu_check.sh --dry

# The mainstream MMDetection stack (Python 3.10, torch 2.1.2, mmcv 2.1.0, mmengine 0.10, mmdet
# 3.3.0; requirements/mmdet-torch21.txt) in .venv-torch21/: the CPU extension, `python -m
# fasa_fast.info`, the op, engine and whole MMDetection suites (every shipped config trained,
# validated and tested), `pip install -e .` / `pip install .` as typed in a venv over this torch,
# and the extension with its CUDA kernels built by a CUDA 12 nvcc for this cu121 torch
# (scripts/fetch_cuda12.sh: CUDA 12.4 from Debian's packages, cached), in results/mainstream/.
# The test run itself builds without CUDA (FORCE_CUDA=0): no GPU here to run those kernels.
MAINSTREAM_TESTS := $(OLDEST_TESTS) tests/test_build.py tests/test_op_registry.py tests/test_op_wrappers.py \
	tests/test_environment.py tests/mmdet tests/test_pip_install.py tests/test_cuda12_build.py
mainstream:
	bash scripts/setup_mainstream.sh
	CUDA12=$$(bash scripts/fetch_cuda12.sh) && \
	FORCE_CUDA=0 FASA_FAST_PIP_INSTALL_TESTS=1 FASA_FAST_CUDA12_HOME=$$CUDA12 \
		PYTHON=.venv-torch21/bin/python OUT=results/mainstream DRY_TESTS="$(MAINSTREAM_TESTS)" \
		bash scripts/gpu_check.sh --dry
