"""Pure-PyTorch reference kernels: the specification of every fasa_fast op.

They run on any device, compute in float64 internally, and never synchronise with the host
(no boolean indexing, no ``.item()``), so they are also the fallback when neither the compiled
extension nor Triton serves a device. Semantics: ``shared/docs/FASA_METHOD.md`` §1 and §4.
"""

from __future__ import annotations

import torch

__all__ = ["segmented_stats_update_reference", "fisher_distance_reference"]


def segmented_stats_update_reference(
    features: torch.Tensor,
    labels: torch.Tensor,
    mean: torch.Tensor,
    std: torch.Tensor,
    seen: torch.Tensor,
    momentum: float,
    momentum_on_var: bool,
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

    For each class c with n_c rows: batch mean m and unbiased std s (s = 0 when n_c = 1).
    First sighting (seen[c] == 0): mean = m, std = s. Later: mean <- (1 - momentum) mean +
    momentum m; std <- (1 - momentum) std + momentum s when n_c > 1 (kept when n_c = 1), or
    with ``momentum_on_var`` std <- sqrt((1 - momentum) std^2 + momentum s^2).
    """
    num_classes, dim = mean.shape
    valid = (labels >= 0) & (labels < num_classes)
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
