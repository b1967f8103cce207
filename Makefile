# The two README commands: `make demo` and `make test`. Both create/update .venv first.
PY := .venv/bin/python

.PHONY: env demo test lint bench gpu-check

env:
	bash scripts/setup_env.sh

demo: env
	$(PY) -m fasa_fast.mmdet.demo

lint: env
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .

test: lint
	$(PY) -m pytest tests/ -q
	$(PY) -m pytest benchmarks/ --benchmark-only -q --quick

bench: env
	$(PY) -m pytest benchmarks/ --benchmark-only --benchmark-min-rounds=10 \
		--benchmark-json=benchmarks/results/cpu-$$(date +%F).json

gpu-check:
	bash scripts/gpu_check.sh

# Mutation testing (mutmut, on a copy of the tree in .mutation/): score per module, docs/mutation.md
.PHONY: mutation
mutation: env
	bash scripts/mutation.sh core
