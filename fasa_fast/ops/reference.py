"""Pure-PyTorch reference kernels: the specification of every fasa_fast op.

They run on any device, compute in float64 internally, and never synchronise with the host
(no boolean indexing, no ``.item()``), so they are also the fallback when neither the compiled
extension nor Triton serves a device. Semantics: ``docs/method.md`` §1, §2 and §4.1.
"""

from __future__ import annotations

import torch

__all__ = [
    "fisher_distance_reference",
    "philox4x32_10",
    "sample_virtual_features_reference",
    "segmented_stats_update_reference",
]


def segmented_stats_update_reference(
    features: torch.Tensor,
    labels: torch.Tensor,
    mean: torch.Tensor,
    std: torch.Tensor,
    seen: torch.Tensor,
    momentum: float,
    momentum_on_var: bool,
    nonfinite: torch.Tensor | None = None,
) -> None:
    """Update per-class running statistics in place from one batch of features.

    Args:
        features: ``[N, D]`` float features (fp32/fp16/bf16).
        labels: ``[N]`` integer labels; rows with a label outside ``[0, C)`` are skipped.
        mean, std: ``[C, D]`` float32 running mean / std, updated in place.
        seen: ``[C]`` int64, how many batches each class appeared in; incremented in place.
        momentum: weight of the batch statistics in the running average.
        momentum_on_var: average the variance instead of the std (the public reference
            implementation's behaviour); a class with one row then pushes a zero variance.
        nonfinite: ``[1]`` int64 or None; foreground rows holding a NaN or an Inf are skipped
            and, when given, counted into ``nonfinite[0]``.

    For each class c with n_c rows: batch mean m and unbiased std s (s = 0 when n_c = 1).
    First sighting (seen[c] == 0): mean = m, std = s. Later: mean <- (1 - momentum) mean +
    momentum m; std <- (1 - momentum) std + momentum s when n_c > 1 (kept when n_c = 1), or
    with ``momentum_on_var`` std <- sqrt((1 - momentum) std^2 + momentum s^2).
    """
    num_classes, dim = mean.shape
    foreground = (labels >= 0) & (labels < num_classes)
    finite = torch.isfinite(features).all(dim=1)
    valid = foreground & finite
    if nonfinite is not None:
        nonfinite.add_((foreground & ~finite).sum())
    # Invalid rows go to a dump bucket at index C, dropped below.
    bucket = torch.where(
        valid, labels.long(), torch.full_like(labels, num_classes, dtype=torch.long)
    )
    x = features.to(torch.float64)
    counts = torch.zeros(num_classes + 1, dtype=torch.float64, device=x.device)
    counts.index_add_(0, bucket, torch.ones_like(bucket, dtype=torch.float64))
    sums = torch.zeros(num_classes + 1, dim, dtype=torch.float64, device=x.device)
    sums.index_add_(0, bucket, x)
    batch_mean = sums / counts.clamp(min=1).unsqueeze(1)
    deviation = x - batch_mean[bucket]  # second pass around the batch mean: no cancellation
    m2 = torch.zeros_like(sums).index_add_(0, bucket, deviation * deviation)
    batch_var = m2 / (counts - 1).clamp(min=1).unsqueeze(1)  # 0 where a class has one row
    counts, batch_mean, batch_var = counts[:-1], batch_mean[:-1], batch_var[:-1]
    batch_std = batch_var.sqrt()

    present = (counts > 0).unsqueeze(1)
    first = present & (seen == 0).unsqueeze(1)
    old_mean = mean.to(torch.float64)
    old_std = std.to(torch.float64)
    new_mean = torch.where(first, batch_mean, (1 - momentum) * old_mean + momentum * batch_mean)
    if momentum_on_var:
        averaged = ((1 - momentum) * old_std.square() + momentum * batch_var).sqrt()
    else:
        multi = (counts > 1).unsqueeze(1)
        averaged = torch.where(multi, (1 - momentum) * old_std + momentum * batch_std, old_std)
    new_std = torch.where(first, batch_std, averaged)
    mean.copy_(torch.where(present, new_mean, old_mean))
    std.copy_(torch.where(present, new_std, old_std))
    seen.add_(present.squeeze(1).long())


def fisher_distance_reference(
    mean: torch.Tensor, std: torch.Tensor, eps: float, *, max_elements: int = 1 << 24
) -> torch.Tensor:
    """Fisher-ratio distance between every pair of classes (FASA Eq. 5, mean over D).

    ``d_ij = mean_k (mu_ik - mu_jk)^2 / (sigma_ik^2 + sigma_jk^2 + eps)``; returns ``[C, C]``
    float32, symmetric with a zero diagonal. Rows are processed in chunks so that at most
    ``max_elements`` float64 values of the ``C x C x D`` difference exist at once.
    """
    num_classes, dim = mean.shape
    mu = mean.to(torch.float64)
    var = std.to(torch.float64).square()
    out = torch.empty(num_classes, num_classes, dtype=torch.float64, device=mean.device)
    rows = max(1, max_elements // max(1, num_classes * dim))
    for start in range(0, num_classes, rows):
        stop = min(num_classes, start + rows)
        diff = mu[start:stop, None, :] - mu[None, :, :]
        out[start:stop] = (diff.square() / (var[start:stop, None, :] + var[None, :, :] + eps)).mean(
            dim=2
        )
    out.fill_diagonal_(0)
    return out.to(torch.float32)


# Philox-4x32-10 on int64 tensors holding uint32 values; the counter layout is documented in
# csrc/philox.h and shared by every backend.
_MASK32 = 0xFFFFFFFF
_PHILOX_M0, _PHILOX_M1 = 0xD2511F53, 0xCD9E8D57
_PHILOX_W0, _PHILOX_W1 = 0x9E3779B9, 0xBB67AE85
_TWO_POW_M32 = 2.3283064365386963e-10  # 2**-32


def philox4x32_10(c0, c1, c2, c3, k0, k1):
    """Philox-4x32-10 of broadcastable int64 tensors (values in [0, 2^32)); four int64 tensors."""
    c0, c1, c2, c3, k0, k1 = torch.broadcast_tensors(c0, c1, c2, c3, k0, k1)
    for _ in range(10):
        p0 = c0 * _PHILOX_M0  # < 2^64: wraps in int64, the low 64 bits stay exact
        p1 = c2 * _PHILOX_M1
        hi0, lo0 = (p0 >> 32) & _MASK32, p0 & _MASK32
        hi1, lo1 = (p1 >> 32) & _MASK32, p1 & _MASK32
        c0, c1, c2, c3 = hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0
        k0 = (k0 + _PHILOX_W0) & _MASK32
        k1 = (k1 + _PHILOX_W1) & _MASK32
    return c0, c1, c2, c3


def _box_muller(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    u1 = (a.to(torch.float32) + 1.0) * _TWO_POW_M32  # (0, 1]: log stays finite
    u2 = (b.to(torch.float32) + 1.0) * _TWO_POW_M32
    radius = (-2.0 * torch.log(u1)).sqrt()
    theta = 6.2831853071795865 * u2
    return radius * torch.cos(theta), radius * torch.sin(theta)


def sample_virtual_features_reference(
    mean: torch.Tensor,
    std: torch.Tensor,
    seen: torch.Tensor,
    prob: torch.Tensor,
    rng_state: torch.Tensor,
    k: int,
    capacity: int,
    key: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Draw FASA's virtual features (method §2) into a fixed-size buffer, without host sync.

    Every class c with ``seen[c] > 0`` gets one Bernoulli(``prob[c]``) trial; each selected
    class gets ``k`` rows ``mean[c] + std[c] * eps``, eps ~ N(0, I). Rows are packed class by
    class in cyclic class order starting at a random class, ``k`` consecutive rows per class;
    rows that do not fit in ``capacity`` are dropped (so overflow never favours low class
    indices). ``rng_state = [seed, call]`` (int64) makes the draw explicit and is advanced by
    one call in place; ``key`` (``[1]`` int64), when given, replaces ``seed`` as the key.

    Returns:
        features: ``[capacity, D]`` float32, zero rows past the valid ones;
        labels: ``[capacity]`` int64, the class of each row or -1 for padding;
        counts: ``[2]`` int64, (rows filled, rows requested = k * selected classes).
    """
    num_classes, dim = mean.shape
    device = mean.device
    seed = rng_state[0] if key is None else key[0]
    call = rng_state[1] & _MASK32
    k0, k1 = seed & _MASK32, (seed >> 32) & _MASK32
    zero = torch.zeros((), dtype=torch.long, device=device)
    classes = torch.arange(num_classes, device=device)

    bits = philox4x32_10(classes, zero, zero, call, k0, k1)[0]
    selected = (seen > 0) & (bits.to(torch.float64) < prob.to(torch.float64) * 4294967296.0)
    start_bits = philox4x32_10(zero, zero, zero + 1, call, k0, k1)[0]
    start = (start_bits * num_classes) >> 32
    # rank of each selected class in cyclic order from `start`
    order = (start + classes) % max(num_classes, 1)  # class at each position
    in_order = selected[order].long()
    rank_at_pos = torch.cumsum(in_order, 0) - in_order
    rank = torch.empty_like(rank_at_pos).scatter_(0, order, rank_at_pos)
    requested = selected.long().sum() * k

    replicas = torch.arange(k, device=device)
    slot = rank[:, None] * k + replicas[None, :]  # [C, k]
    keep = selected[:, None] & (slot < capacity)
    slot = torch.where(keep, slot, torch.full_like(slot, capacity))  # dump slot at `capacity`
    slot_class = torch.full((capacity + 1,), -1, dtype=torch.long, device=device)
    slot_class.scatter_(0, slot.flatten(), classes[:, None].expand(-1, k).flatten())
    slot_replica = torch.zeros(capacity + 1, dtype=torch.long, device=device)
    slot_replica.scatter_(0, slot.flatten(), replicas[None, :].expand(num_classes, -1).flatten())
    slot_class, slot_replica = slot_class[:capacity], slot_replica[:capacity]

    valid = slot_class >= 0
    cls = slot_class.clamp(min=0)
    quads = torch.arange((dim + 3) // 4, device=device)
    r0, r1, r2, r3 = philox4x32_10(
        quads[None, :], cls[:, None], 2 + slot_replica[:, None], call, k0, k1
    )
    z0, z1 = _box_muller(r0, r1)
    z2, z3 = _box_muller(r2, r3)
    eps = torch.stack([z0, z1, z2, z3], dim=2).reshape(capacity, 4 * quads.numel())[:, :dim]
    if num_classes > 0:
        rows = mean.index_select(0, cls) + std.index_select(0, cls) * eps
    else:
        rows = torch.zeros(capacity, dim, dtype=torch.float32, device=device)
    features = torch.where(valid[:, None], rows, torch.zeros_like(rows))
    counts = torch.stack([valid.long().sum(), requested])
    rng_state[1:].add_(1)
    return features, torch.where(valid, slot_class, -1), counts
