"""Triton kernel of ``fasa_fast::segmented_stats_update_``: one program per class.

The launcher groups the rows by class on the device (a stable sort of the labels, invalid ones
last, and each class's start and count), so a program reads its own rows only: the first
version scanned every label for every class and feature tile (C x N label reads, 2.5 ms at LVIS
shapes on an H100, where the CUDA kernel takes 36 us). For each feature tile of ``BLOCK_D`` dims
the program walks its rows in chunks of ``BLOCK_N``, computes each chunk's exact two-pass mean /
M2 and merges chunks (Chan et al.), then applies the momentum update. A first launch, also one
program per class, flags the class's rows that hold a NaN or an Inf (they are left out and
counted into ``nonfinite``, one integer atomic per program: deterministic); a separate launch
keeps the update kernel's registers as they were (the flags in the same program made ptxas
spill for bf16). Programs of absent classes stop at once. ``seen[c]`` is read before and written
after all tiles of its own program.
"""

from __future__ import annotations

from types import SimpleNamespace

import torch
import triton
import triton.language as tl
from fasa_fast.kernels._launch import Launch, lanes, runs_plan, takes_arguments_of

from fasa_fast.ops.reference import segmented_stats_update_reference


@triton.jit
def _class_rows(starts_ptr, counts_ptr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr):
    # one program per class: its class, the row and feature lanes, and where its rows stand in
    # the sorted order (the first position and how many)
    c = tl.program_id(0)
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    return c, offs_n, offs_d, tl.load(starts_ptr + c), tl.load(counts_ptr + c)


@triton.jit
def _load_features(x_ptr, rows, cols, mask, dim):
    # features [N, D] at rows x cols, as float32 (0 where masked); int64 addresses
    ptrs = x_ptr + rows.to(tl.int64)[:, None] * dim + cols[None, :]
    return tl.load(ptrs, mask=mask, other=0.0).to(tl.float32)


@triton.jit
def _flag_finite_rows_kernel(
    x_ptr, order_ptr, starts_ptr, counts_ptr, ok_ptr, good_ptr, nonfinite_ptr, dim,
    COUNT_NONFINITE: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
):  # fmt: skip
    # one program per class: flags its rows that hold no NaN / Inf (in its own slice of `ok`,
    # the class's positions in the sorted order), writes how many are left and counts the others
    c, offs_n, offs_d, first_row, total = _class_rows(starts_ptr, counts_ptr, BLOCK_N, BLOCK_D)
    dropped = tl.zeros((), dtype=tl.int64)
    for start in range(0, total, BLOCK_N):
        hit = start + offs_n < total
        rows = tl.load(order_ptr + first_row + start + offs_n, mask=hit, other=0)
        row_bad = tl.zeros((BLOCK_N,), dtype=tl.int32)
        for d0 in range(0, dim, BLOCK_D):
            cols = d0 + offs_d
            x = _load_features(x_ptr, rows, cols, hit[:, None] & (cols < dim)[None, :], dim)
            bad = (x != x) | (tl.abs(x) == float("inf"))
            row_bad = tl.maximum(row_bad, tl.max(bad.to(tl.int32), axis=1))
        tl.store(ok_ptr + first_row + start + offs_n, (row_bad == 0).to(tl.int8), mask=hit)
        dropped += tl.sum(tl.where(hit, row_bad, 0), axis=0).to(tl.int64)
    tl.store(good_ptr + c, total - dropped)
    if COUNT_NONFINITE:
        if dropped > 0:
            tl.atomic_add(nonfinite_ptr, dropped)


@triton.jit
def _segmented_stats_update_kernel(
    x_ptr, order_ptr, starts_ptr, counts_ptr, ok_ptr, good_ptr, mean_ptr, std_ptr, seen_ptr,
    dim, momentum,
    MOMENTUM_ON_VAR: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
):  # fmt: skip
    # total: the class's rows in the sorted order
    c, offs_n, offs_d, first_row, total = _class_rows(starts_ptr, counts_ptr, BLOCK_N, BLOCK_D)
    good = tl.load(good_ptr + c)  # those of them without a NaN / Inf
    if good > 0:
        first = tl.load(seen_ptr + c) == 0
        for d0 in range(0, dim, BLOCK_D):
            cols = d0 + offs_d
            col_ok = cols < dim
            cnt = tl.zeros((BLOCK_D,), dtype=tl.float32)
            mu = tl.zeros((BLOCK_D,), dtype=tl.float32)
            m2 = tl.zeros((BLOCK_D,), dtype=tl.float32)
            for start in range(0, total, BLOCK_N):
                in_class = start + offs_n < total
                rows = tl.load(order_ptr + first_row + start + offs_n, mask=in_class, other=0)
                ok = tl.load(ok_ptr + first_row + start + offs_n, mask=in_class, other=0)
                hit = in_class & (ok != 0)
                n_here = tl.sum(hit.to(tl.float32), axis=0)
                mask = hit[:, None] & col_ok[None, :]
                x = _load_features(x_ptr, rows, cols, mask, dim)
                # a chunk of dropped rows only (n_here = 0) changes nothing
                mb = tl.sum(x, axis=0) / tl.maximum(n_here, 1.0)
                dev = tl.where(mask, x - mb[None, :], 0.0)
                m2b = tl.sum(dev * dev, axis=0)
                merged = cnt + n_here
                delta = mb - mu
                w = n_here / tl.maximum(merged, 1.0)
                mu = mu + delta * w
                m2 = m2 + m2b + delta * delta * cnt * w
                cnt = merged
            var_t = m2 / tl.maximum(good - 1, 1).to(tl.float32)
            std_t = tl.sqrt(var_t)
            old_mu = tl.load(mean_ptr + c * dim + cols, mask=col_ok, other=0.0)
            old_sd = tl.load(std_ptr + c * dim + cols, mask=col_ok, other=0.0)
            new_mu = (1.0 - momentum) * old_mu + momentum * mu
            if MOMENTUM_ON_VAR:
                new_sd = tl.sqrt((1.0 - momentum) * old_sd * old_sd + momentum * var_t)
            else:
                new_sd = tl.where(good > 1, (1.0 - momentum) * old_sd + momentum * std_t, old_sd)
            new_mu = tl.where(first, mu, new_mu)
            new_sd = tl.where(first, std_t, new_sd)
            tl.store(mean_ptr + c * dim + cols, new_mu, mask=col_ok)
            tl.store(std_ptr + c * dim + cols, new_sd, mask=col_ok)
        tl.store(seen_ptr + c, tl.load(seen_ptr + c) + 1)


# 16 rows of one class per chunk, 64 dims per tile, over 8 warps. Rows come through the sorted
# row indices (int64), whose address arithmetic made ptxas spill on sm_90 for fp16 / bf16
# features: Triton 3.8's at 32 rows x 128 dims, Triton 3.6's (the GPU image's) at 16 x 128; with
# the per-row finite flags of the non-finite skipping, Triton 3.6 spilled at 16 x 64 for every
# dtype; at 16 x 32 neither spills (tests/test_triton_aot.py compiles every specialisation in both).
# A class has few rows in a step (LVIS: ~2 per present class of 256 positives), so a longer
# chunk would mostly be masked off. Not yet timed on a GPU.
BLOCK_N = 16  # rows of one class per chunk
MAX_BLOCK_D = 32  # feature dims per tile
NUM_WARPS = 8


@takes_arguments_of(segmented_stats_update_reference)  # the op's parameters, written there
def segmented_stats_update_launches(op: SimpleNamespace) -> list[Launch]:
    """The launches of one update (none for an empty batch or class set); arguments as
    ``fasa_fast.ops.segmented_stats_update_``."""
    n_rows, dim = op.features.shape
    num_classes = op.mean.shape[0]
    if n_rows == 0 or num_classes == 0:
        return []
    # rows grouped by class on the device, without a host sync or atomics (bincount would read
    # the labels' maximum back to the host): a stable sort keeps each class's rows in row order
    # (deterministic chunks), ignored / background labels sort last, and a binary search of the
    # sorted labels gives each class's first row and row count
    labels = op.labels.to(torch.int64)
    key = torch.where((labels >= 0) & (labels < num_classes), labels, num_classes)
    sorted_key, order = torch.sort(key, stable=True)
    classes = torch.arange(num_classes + 1, device=key.device)
    bounds = torch.searchsorted(sorted_key, classes)
    starts, counts = bounds[:-1], bounds[1:] - bounds[:-1]
    ok = torch.empty(n_rows, dtype=torch.int8, device=key.device)  # each program its own slice
    good = torch.empty(num_classes, dtype=torch.int64, device=key.device)
    x = op.features.contiguous()
    block = {"BLOCK_N": BLOCK_N, "BLOCK_D": lanes(dim, MAX_BLOCK_D), "num_warps": NUM_WARPS}
    counter = (
        op.nonfinite if op.nonfinite is not None else good
    )  # not written without COUNT_NONFINITE
    return [
        Launch(
            _flag_finite_rows_kernel,
            (num_classes,),
            (x, order, starts, counts, ok, good, counter, dim),
            {"COUNT_NONFINITE": op.nonfinite is not None, **block},
        ),
        Launch(
            _segmented_stats_update_kernel,
            (num_classes,),
            (x, order, starts, counts, ok, good, op.mean, op.std, op.seen, dim, float(op.momentum)),
            {"MOMENTUM_ON_VAR": bool(op.momentum_on_var), **block},
        ),
    ]


# the op's Triton implementation: runs the plan above (arguments as
# ``fasa_fast.ops.segmented_stats_update_``)
segmented_stats_update_triton = runs_plan(
    segmented_stats_update_launches, "segmented_stats_update_triton"
)
