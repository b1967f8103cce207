"""The launch budget of the FASA box head's part of ``loss_and_target`` (its statistics update
and virtual loss, with the backward of ``loss_cls_fasa``): within ``STEP_BUDGET`` dispatched ops
on every CPU backend, no host synchronisation (``benchmarks/launch_budget.py``)."""

from __future__ import annotations

import pytest

from benchmarks.launch_budget import HOST_SYNC_OPS, STEP_BUDGET, count_ops, mmdet_head_step
from fasa_fast.ops import _library

CPU_BACKENDS = [p for p in _library.BACKENDS if p in _library.available_backends("cpu")]


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_softmax_head_step_within_budget(backend):
    with _library.use_backend("cpu", backend):
        step = mmdet_head_step(40, 64, 128)
        step()
        counter = count_ops(step)
    ops = counter.counts
    assert counter.total <= STEP_BUDGET, f"{counter.total} ops per step: {dict(ops)}"
    assert not set(ops) & set(HOST_SYNC_OPS), f"host synchronisation in the step: {dict(ops)}"
    assert ops["fasa_fast::segmented_stats_update_"] == 1
    assert ops["fasa_fast::sample_virtual_features"] == 1
