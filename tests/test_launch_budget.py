"""The launch budget of a FASA training step (``benchmarks/launch_budget.py``), held per CPU
backend: the ops one default step dispatches (engine ``update`` + ``virtual_loss`` forward and
backward) stay within ``STEP_BUDGET``, none of them reads a value back to the host, and the
counter counts what it claims (views and allocations not, a fasa_fast op once)."""

from __future__ import annotations

import pytest
import torch

from benchmarks.launch_budget import (
    HOST_SYNC_OPS,
    STEP_BUDGET,
    count_ops,
    engine_step,
    launches_kernel,
)
from fasa_fast.ops import _library, make_rng_state, sample_virtual_features

SHAPE = (40, 64, 128)  # C, D, RoIs: the count does not depend on the shape
CPU_BACKENDS = [p for p in _library.BACKENDS if p in _library.available_backends("cpu")]


def test_counter_skips_views_and_allocations_and_counts_the_rest():
    x = torch.randn(4, 6)
    counter = count_ops(lambda: (x.t(), x[1:], x.view(24), torch.empty(3), x + 1, x.sum()))
    assert counter.counts == {"aten::add.Tensor": 1, "aten::sum": 1}, counter.counts
    assert counter.skipped["aten::t"] == 1 and counter.skipped["aten::empty.memory_format"] == 1


def test_a_fasa_fast_op_counts_once():
    mean, std = torch.zeros(5, 8), torch.ones(5, 8)
    seen, prob = torch.ones(5, dtype=torch.long), torch.full((5,), 0.5)
    state = make_rng_state(0)
    counter = count_ops(lambda: sample_virtual_features(mean, std, seen, prob, state, 1, 4))
    assert counter.counts == {"fasa_fast::sample_virtual_features": 1}, counter.counts


def test_in_place_ops_count_and_aliases_do_not():
    add_ = torch.ops.aten.add_.Tensor
    detach = torch.ops.aten.detach.default
    assert launches_kernel(add_) and not launches_kernel(detach)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_default_engine_step_within_budget(backend):
    with _library.use_backend("cpu", backend):
        step = engine_step(*SHAPE)
        step()  # first step: lazy initialisations
        counter = count_ops(step)
    ops = counter.counts
    assert counter.total <= STEP_BUDGET, f"{counter.total} ops per step: {dict(ops)}"
    assert not set(ops) & set(HOST_SYNC_OPS), f"host synchronisation in the step: {dict(ops)}"
    # the work itself: the update, the draw, the classifier forward and its weight gradient
    for op in (
        "fasa_fast::segmented_stats_update_",
        "fasa_fast::sample_virtual_features",
        "aten::addmm",
        "aten::mm",
    ):
        assert ops[op] == 1, f"{op}: expected once per step, got {ops[op]} ({dict(ops)})"
