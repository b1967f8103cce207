"""Triton kernel of ``fasa_fast::fisher_distance``: one program per tile of class pairs.

A program owns a ``BLOCK_C x BLOCK_C`` tile on or above the diagonal, loops over D in chunks of
``BLOCK_D`` and writes its tile and the mirrored one; programs below the diagonal return.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from fasa_fast.kernels._launch import Launch, lanes, run


@triton.jit
def _load_tile(ptr, idx, idx_ok, dd, d_ok, dim, other):
    # rows `idx` x dims `dd` of a [C, D] matrix; masked lanes read `other` (mean 0 and variance 1
    # make a zero, finite term)
    return tl.load(
        ptr + idx[:, None] * dim + dd[None, :], mask=idx_ok[:, None] & d_ok[None, :], other=other
    )


@triton.jit
def _fisher_distance_kernel(
    mean_ptr, var_ptr, out_ptr, n_classes, dim, eps,
    BLOCK_C: tl.constexpr, BLOCK_D: tl.constexpr,
):  # fmt: skip
    ti = tl.program_id(0)
    tj = tl.program_id(1)
    if tj >= ti:
        ii = ti * BLOCK_C + tl.arange(0, BLOCK_C)
        jj = tj * BLOCK_C + tl.arange(0, BLOCK_C)
        i_ok = ii < n_classes
        j_ok = jj < n_classes
        acc = tl.zeros((BLOCK_C, BLOCK_C), dtype=tl.float32)
        for d0 in range(0, dim, BLOCK_D):
            dd = d0 + tl.arange(0, BLOCK_D)
            d_ok = dd < dim
            mi = _load_tile(mean_ptr, ii, i_ok, dd, d_ok, dim, 0.0)
            vi = _load_tile(var_ptr, ii, i_ok, dd, d_ok, dim, 1.0)
            mj = _load_tile(mean_ptr, jj, j_ok, dd, d_ok, dim, 0.0)
            vj = _load_tile(var_ptr, jj, j_ok, dd, d_ok, dim, 1.0)
            diff = mi[:, None, :] - mj[None, :, :]
            term = diff * diff / (vi[:, None, :] + vj[None, :, :] + eps)
            acc += tl.sum(term, axis=2)
        acc = acc / dim
        acc = tl.where(ii[:, None] == jj[None, :], 0.0, acc)
        mask = i_ok[:, None] & j_ok[None, :]
        tl.store(out_ptr + ii[:, None] * n_classes + jj[None, :], acc, mask=mask)
        tl.store(out_ptr + jj[None, :] * n_classes + ii[:, None], acc, mask=mask)


BLOCK_C = 16  # classes per tile side
MAX_BLOCK_D = 32  # feature dims per chunk


def fisher_distance_launches(
    mean: torch.Tensor, std: torch.Tensor, eps: float, out: torch.Tensor
) -> list[Launch]:
    """The launches that fill ``out [C, C]``; arguments as ``fasa_fast.ops.fisher_distance``."""
    num_classes, dim = mean.shape
    if num_classes == 0:
        return []
    tiles = triton.cdiv(num_classes, BLOCK_C)
    meta = {"BLOCK_C": BLOCK_C, "BLOCK_D": lanes(dim, MAX_BLOCK_D)}
    args = (mean.contiguous(), std.square().contiguous(), out, num_classes, dim, float(eps))
    return [Launch(_fisher_distance_kernel, (tiles, tiles), args, meta)]


def fisher_distance_triton(mean: torch.Tensor, std: torch.Tensor, eps: float) -> torch.Tensor:
    """Launch the kernel: arguments as ``fasa_fast.ops.fisher_distance``; returns ``[C, C]``."""
    num_classes = mean.shape[0]
    out = torch.empty(num_classes, num_classes, dtype=torch.float32, device=mean.device)
    run(fisher_distance_launches(mean, std, eps, out), mean.device)
    return out
