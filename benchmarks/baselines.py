"""Baselines the fused ops are measured against (checked in tests/test_baselines.py).

- ``stats_update_per_class_loop``: the public reference implementation's style, a Python loop
  over the classes present with boolean indexing (one host sync per class);
- ``stats_update_vectorised``: a straightforward vectorised torch version, index_add over full
  ``[C, D]`` buffers, fp32 sum / sum-of-squares;
- ``fisher_distance_chunked``: chunked broadcasting in fp32, the obvious torch way.
"""

from __future__ import annotations

import torch


def stats_update_per_class_loop(features, labels, mean, std, seen, momentum=0.1):
    num_classes = mean.shape[0]
    for c in labels.unique().tolist():
        if c < 0 or c >= num_classes:
            continue
        rows = features[labels == c].float()
        m = rows.mean(0)
        if seen[c] == 0:
            mean[c] = m
            std[c] = rows.std(0) if rows.shape[0] > 1 else torch.zeros_like(m)
        else:
            mean[c] = (1 - momentum) * mean[c] + momentum * m
            if rows.shape[0] > 1:
                std[c] = (1 - momentum) * std[c] + momentum * rows.std(0)
        seen[c] += 1


def stats_update_vectorised(features, labels, mean, std, seen, momentum=0.1):
    num_classes, dim = mean.shape
    valid = (labels >= 0) & (labels < num_classes)
    bucket = torch.where(valid, labels, torch.full_like(labels, num_classes))
    x = features.float()
    counts = torch.zeros(num_classes + 1, device=x.device).index_add_(
        0, bucket, torch.ones_like(bucket, dtype=torch.float32)
    )
    sums = torch.zeros(num_classes + 1, dim, device=x.device).index_add_(0, bucket, x)
    squares = torch.zeros(num_classes + 1, dim, device=x.device).index_add_(0, bucket, x * x)
    n = counts[:-1, None]
    batch_mean = sums[:-1] / n.clamp(min=1)
    batch_var = (squares[:-1] - n * batch_mean**2) / (n - 1).clamp(min=1)
    batch_std = batch_var.clamp(min=0).sqrt()
    present, first, multi = n > 0, (n > 0) & (seen[:, None] == 0), n > 1
    mean.copy_(
        torch.where(
            first,
            batch_mean,
            torch.where(present, (1 - momentum) * mean + momentum * batch_mean, mean),
        )
    )
    std.copy_(
        torch.where(
            first, batch_std, torch.where(multi, (1 - momentum) * std + momentum * batch_std, std)
        )
    )
    seen.add_(present.squeeze(1).long())


def fisher_distance_chunked(mean, std, eps=1e-6, chunk=16):
    var = std.square()
    out = torch.empty(mean.shape[0], mean.shape[0], device=mean.device)
    for start in range(0, mean.shape[0], chunk):
        diff = mean[start : start + chunk, None, :] - mean[None]
        out[start : start + chunk] = (
            diff.square() / (var[start : start + chunk, None, :] + var[None] + eps)
        ).mean(2)
    out.fill_diagonal_(0)
    return out
