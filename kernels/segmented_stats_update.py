"""Triton kernel of ``fasa_fast::segmented_stats_update_``: one program per class.

A program scans the labels in chunks of ``BLOCK_N`` rows; for each feature tile of ``BLOCK_D``
dims it computes each chunk's exact two-pass mean / M2 over the rows of its class and merges
chunks (Chan et al.), then applies the momentum update. Programs of absent classes stop after
counting. ``seen[c]`` is read before and written after all tiles of its own program.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from fasa_fast.kernels._launch import Launch, lanes, run


@triton.jit
def _segmented_stats_update_kernel(
    x_ptr, labels_ptr, mean_ptr, std_ptr, seen_ptr,
    n_rows, dim, momentum,
    MOMENTUM_ON_VAR: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
):  # fmt: skip
    c = tl.program_id(0)
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    total = tl.zeros((), dtype=tl.int32)
    for start in range(0, n_rows, BLOCK_N):
        rows = start + offs_n
        lab = tl.load(labels_ptr + rows, mask=rows < n_rows, other=-1)
        total += tl.sum((lab == c).to(tl.int32), axis=0)
    if total > 0:
        first = tl.load(seen_ptr + c) == 0
        for d0 in range(0, dim, BLOCK_D):
            cols = d0 + offs_d
            col_ok = cols < dim
            cnt = tl.zeros((BLOCK_D,), dtype=tl.float32)
            mu = tl.zeros((BLOCK_D,), dtype=tl.float32)
            m2 = tl.zeros((BLOCK_D,), dtype=tl.float32)
            for start in range(0, n_rows, BLOCK_N):
                rows = start + offs_n
                lab = tl.load(labels_ptr + rows, mask=rows < n_rows, other=-1)
                hit = lab == c
                n_here = tl.sum(hit.to(tl.float32), axis=0)
                mask = hit[:, None] & col_ok[None, :]
                ptrs = x_ptr + rows.to(tl.int64)[:, None] * dim + cols[None, :]
                x = tl.load(ptrs, mask=mask, other=0.0).to(tl.float32)
                safe_n = tl.maximum(n_here, 1.0)
                mb = tl.sum(x, axis=0) / safe_n
                dev = tl.where(mask, x - mb[None, :], 0.0)
                m2b = tl.sum(dev * dev, axis=0)
                merged = cnt + n_here
                delta = mb - mu
                w = n_here / tl.maximum(merged, 1.0)
                mu = mu + delta * w
                m2 = m2 + m2b + delta * delta * cnt * w
                cnt = merged
            var_t = m2 / tl.maximum(total - 1, 1).to(tl.float32)
            std_t = tl.sqrt(var_t)
            old_mu = tl.load(mean_ptr + c * dim + cols, mask=col_ok, other=0.0)
            old_sd = tl.load(std_ptr + c * dim + cols, mask=col_ok, other=0.0)
            new_mu = (1.0 - momentum) * old_mu + momentum * mu
            if MOMENTUM_ON_VAR:
                new_sd = tl.sqrt((1.0 - momentum) * old_sd * old_sd + momentum * var_t)
            else:
                new_sd = tl.where(total > 1, (1.0 - momentum) * old_sd + momentum * std_t, old_sd)
            new_mu = tl.where(first, mu, new_mu)
            new_sd = tl.where(first, std_t, new_sd)
            tl.store(mean_ptr + c * dim + cols, new_mu, mask=col_ok)
            tl.store(std_ptr + c * dim + cols, new_sd, mask=col_ok)
        tl.store(seen_ptr + c, tl.load(seen_ptr + c) + 1)


# 32-row chunks over 8 warps: with 64 rows on 4 warps, Triton 3.8's ptxas spilled 4-12 bytes
# on sm_90 in 3 of the 144 specialisations (tests/test_triton_aot.py compiles them all); now
# none spills and the widest tile takes 80 registers, not 185. Not yet timed on a GPU.
BLOCK_N = 32  # label rows scanned per chunk
MAX_BLOCK_D = 128  # feature dims per tile
NUM_WARPS = 8


def segmented_stats_update_launches(
    features: torch.Tensor,
    labels: torch.Tensor,
    mean: torch.Tensor,
    std: torch.Tensor,
    seen: torch.Tensor,
    momentum: float,
    momentum_on_var: bool,
) -> list[Launch]:
    """The launches of one update (none for an empty batch or class set); arguments as
    ``fasa_fast.ops.segmented_stats_update_``."""
    n_rows, dim = features.shape
    if n_rows == 0 or mean.shape[0] == 0:
        return []
    meta = {
        "MOMENTUM_ON_VAR": bool(momentum_on_var),
        "BLOCK_N": BLOCK_N,
        "BLOCK_D": lanes(dim, MAX_BLOCK_D),
        "num_warps": NUM_WARPS,
    }
    args = (features.contiguous(), labels.contiguous(), mean, std, seen, n_rows, dim,
            float(momentum))  # fmt: skip
    return [Launch(_segmented_stats_update_kernel, (mean.shape[0],), args, meta)]


def segmented_stats_update_triton(
    features: torch.Tensor,
    labels: torch.Tensor,
    mean: torch.Tensor,
    std: torch.Tensor,
    seen: torch.Tensor,
    momentum: float,
    momentum_on_var: bool,
) -> None:
    """Launch the kernel: arguments as ``fasa_fast.ops.segmented_stats_update_``."""
    launches = segmented_stats_update_launches(
        features, labels, mean, std, seen, momentum, momentum_on_var
    )
    run(launches, mean.device)
