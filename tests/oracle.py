"""Independent float64 oracles for the tests: slow, explicit loops, written from
shared/docs/FASA_METHOD.md and sharing no code with fasa_fast."""

from __future__ import annotations

import torch


def stats_update_oracle(features, labels, mean, std, seen, momentum, momentum_on_var):
    """Returns updated (mean, std, seen) as float64/int64 copies; inputs are untouched."""
    mean = mean.detach().to(torch.float64).cpu().clone()
    std = std.detach().to(torch.float64).cpu().clone()
    seen = seen.detach().cpu().clone()
    x = features.detach().to(torch.float64).cpu()
    labels = labels.detach().cpu().tolist()
    num_classes, dim = mean.shape
    for c in range(num_classes):
        rows = [i for i, lab in enumerate(labels) if lab == c]
        if not rows:
            continue
        n = len(rows)
        block = x[rows]  # [n, D]
        m = block.sum(0) / n
        var = (
            ((block - m) ** 2).sum(0) / (n - 1) if n > 1 else torch.zeros(dim, dtype=torch.float64)
        )
        if seen[c] == 0:
            mean[c], std[c] = m, var.sqrt()
        else:
            mean[c] = (1 - momentum) * mean[c] + momentum * m
            if momentum_on_var:
                std[c] = ((1 - momentum) * std[c] ** 2 + momentum * var).sqrt()
            elif n > 1:
                std[c] = (1 - momentum) * std[c] + momentum * var.sqrt()
        seen[c] += 1
    return mean, std, seen


def fisher_oracle(mean, std, eps):
    mu = mean.detach().to(torch.float64).cpu()
    var = std.detach().to(torch.float64).cpu() ** 2
    num_classes, dim = mu.shape
    out = torch.zeros(num_classes, num_classes, dtype=torch.float64)
    for i in range(num_classes):
        for j in range(num_classes):
            if i != j:
                out[i, j] = ((mu[i] - mu[j]) ** 2 / (var[i] + var[j] + eps)).sum() / dim
    return out
