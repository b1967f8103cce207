"""Triton kernels of ``fasa_fast::sample_virtual_features`` (two launches, no host sync).

``_select_classes_kernel`` (one program) draws the Bernoulli trials, ranks the selected
classes in cyclic order from a random start, writes the slot -> (class, replica) map and the
counts, and advances the call counter; ``_fill_rows_kernel`` (one program per output row)
writes ``mean + std * N(0, 1)`` or a zero row with label -1.
"""

from __future__ import annotations

from types import SimpleNamespace

import torch
import triton
import triton.language as tl
from fasa_fast.kernels._launch import Launch, lanes, run, takes_arguments_of
from fasa_fast.kernels.philox import box_muller, philox4x32_10

from fasa_fast.ops.reference import sample_virtual_features_reference


@triton.jit
def _select_classes_kernel(
    seen_ptr, prob_ptr, key_ptr, rng_ptr, slot_class_ptr, slot_replica_ptr, counts_ptr,
    n_classes, k, capacity, BLOCK_C: tl.constexpr,
):  # fmt: skip
    seed = tl.load(key_ptr)  # key_ptr is rng_ptr when the op has no separate key
    call = tl.load(rng_ptr + 1) & 0xFFFFFFFF
    key0 = seed & 0xFFFFFFFF
    key1 = (seed >> 32) & 0xFFFFFFFF
    lanes = tl.arange(0, BLOCK_C)
    zeros = tl.zeros((BLOCK_C,), dtype=tl.int64)
    start_bits = philox4x32_10(zeros, zeros, zeros + 1, zeros + call, zeros + key0, zeros + key1)[0]
    start = tl.max((start_bits.to(tl.uint64) * n_classes) >> 32, axis=0).to(tl.int64)
    total = tl.zeros((), dtype=tl.int64)
    for base in range(0, n_classes, BLOCK_C):
        pos = base + lanes
        in_range = pos < n_classes
        c = (start + pos) % n_classes
        bits = philox4x32_10(c, zeros, zeros, zeros + call, zeros + key0, zeros + key1)[0]
        p = tl.load(prob_ptr + c, mask=in_range, other=0.0)
        s = tl.load(seen_ptr + c, mask=in_range, other=0)
        flag = in_range & (s > 0) & (bits.to(tl.float64) < p.to(tl.float64) * 4294967296.0)
        flag_i = flag.to(tl.int64)
        rank = total + tl.cumsum(flag_i, axis=0) - flag_i
        for j in range(0, k):
            slot = rank * k + j
            ok = flag & (slot < capacity)
            tl.store(slot_class_ptr + slot, c.to(tl.int32), mask=ok)
            tl.store(slot_replica_ptr + slot, zeros.to(tl.int32) + j, mask=ok)
        total += tl.sum(flag_i, axis=0)
    tl.store(counts_ptr, tl.minimum(total * k, capacity))
    tl.store(counts_ptr + 1, total * k)
    tl.store(rng_ptr + 1, tl.load(rng_ptr + 1) + 1)


@triton.jit
def _fill_rows_kernel(
    mean_ptr, std_ptr, key_ptr, rng_ptr, slot_class_ptr, slot_replica_ptr, out_ptr, labels_ptr,
    dim, BLOCK_Q: tl.constexpr,
):  # fmt: skip
    slot = tl.program_id(0).to(tl.int64)
    c = tl.load(slot_class_ptr + slot).to(tl.int64)
    stream = tl.load(slot_replica_ptr + slot).to(tl.int64) + 2
    seed = tl.load(key_ptr)
    call = (tl.load(rng_ptr + 1) - 1) & 0xFFFFFFFF  # advanced by the select kernel
    key0 = seed & 0xFFFFFFFF
    key1 = (seed >> 32) & 0xFFFFFFFF
    valid = c >= 0
    cls = tl.maximum(c, 0)
    tl.store(labels_ptr + slot, tl.where(valid, c, -1))
    zeros = tl.zeros((BLOCK_Q,), dtype=tl.int64)
    for q0 in range(0, (dim + 3) // 4, BLOCK_Q):
        q = q0 + tl.arange(0, BLOCK_Q)
        r0, r1, r2, r3 = philox4x32_10(
            q, zeros + cls, zeros + stream, zeros + call, zeros + key0, zeros + key1
        )
        z0, z1 = box_muller(r0, r1)
        z2, z3 = box_muller(r2, r3)
        for t in tl.static_range(4):
            z = z0 if t == 0 else (z1 if t == 1 else (z2 if t == 2 else z3))
            d = q * 4 + t
            ok = d < dim
            mu = tl.load(mean_ptr + cls * dim + d, mask=ok, other=0.0)
            sd = tl.load(std_ptr + cls * dim + d, mask=ok, other=0.0)
            tl.store(out_ptr + slot * dim + d, tl.where(valid, mu + sd * z, 0.0), mask=ok)


MAX_BLOCK_C = 1024  # classes per chunk of the selection scan
MAX_BLOCK_Q = 256  # Philox quads (4 dims) per chunk of a row


@takes_arguments_of(sample_virtual_features_reference)  # the op's parameters, written there
def sample_virtual_features_launches(
    op: SimpleNamespace, *, features: torch.Tensor, labels: torch.Tensor, counts: torch.Tensor
) -> list[Launch]:
    """The launches that fill ``features [capacity, D]``, ``labels``, ``counts`` and advance
    ``rng_state``, for ``C >= 1`` classes; the op's arguments as
    ``fasa_fast.ops.sample_virtual_features``, then the outputs (keyword-only)."""
    num_classes, dim = op.mean.shape
    capacity, rng_state = op.capacity, op.rng_state
    key_state = rng_state if op.key is None else op.key  # the key is element 0 of either
    # slot -> (class, replica); -1 marks an unfilled slot
    slots = torch.full((2, max(capacity, 1)), -1, dtype=torch.int32, device=op.mean.device)
    launches = [
        Launch(
            _select_classes_kernel,
            (1,),
            (op.seen.contiguous(), op.prob.contiguous(), key_state, rng_state, slots[0], slots[1],
             counts, num_classes, op.k, capacity),
            {"BLOCK_C": lanes(num_classes, MAX_BLOCK_C)},
        )
    ]  # fmt: skip
    if capacity > 0:
        launches.append(
            Launch(
                _fill_rows_kernel,
                (capacity,),
                (op.mean.contiguous(), op.std.contiguous(), key_state, rng_state, slots[0], slots[1],
                 features, labels, dim),
                {"BLOCK_Q": lanes((dim + 3) // 4, MAX_BLOCK_Q)},
            )
        )  # fmt: skip
    return launches


@takes_arguments_of(sample_virtual_features_reference)
def sample_virtual_features_triton(
    op: SimpleNamespace,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Launch the kernels: arguments and results as ``fasa_fast.ops.sample_virtual_features``.
    Not ``runs_plan`` (segmented_stats_update): this entry allocates the outputs the plan fills
    and serves C = 0 without a launch."""
    num_classes, dim = op.mean.shape
    device = op.mean.device
    features = torch.empty(op.capacity, dim, dtype=torch.float32, device=device)
    labels = torch.empty(op.capacity, dtype=torch.long, device=device)
    counts = torch.zeros(2, dtype=torch.long, device=device)
    if num_classes == 0:
        features.zero_()
        labels.fill_(-1)
        op.rng_state[1:].add_(1)
        return features, labels, counts
    launches = sample_virtual_features_launches(
        **vars(op), features=features, labels=labels, counts=counts
    )
    run(launches, device)
    return features, labels, counts
