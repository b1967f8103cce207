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


def philox_oracle(counter, key):
    """Philox-4x32-10 on Python ints (Salmon et al. 2011), for one counter."""
    c0, c1, c2, c3 = counter
    k0, k1 = key
    mask = 0xFFFFFFFF
    for _ in range(10):
        p0, p1 = 0xD2511F53 * c0, 0xCD9E8D57 * c2
        c0, c1, c2, c3 = (
            ((p1 >> 32) ^ c1 ^ k0) & mask,
            p1 & mask,
            ((p0 >> 32) ^ c3 ^ k1) & mask,
            p0 & mask,
        )
        k0, k1 = (k0 + 0x9E3779B9) & mask, (k1 + 0xBB67AE85) & mask
    return c0, c1, c2, c3


def sample_oracle(mean, std, seen, prob, seed, call, k, capacity):
    """Virtual-feature draw with the documented counter layout, in float64 Python loops.

    Returns (features [capacity, D] float64, labels [capacity] int64, (filled, requested)).
    """
    import math

    num_classes, dim = mean.shape
    key = (seed & 0xFFFFFFFF, (seed >> 32) & 0xFFFFFFFF)
    call &= 0xFFFFFFFF
    selected = [
        int(seen[c]) > 0 and philox_oracle((c, 0, 0, call), key)[0] < float(prob[c]) * 2.0**32
        for c in range(num_classes)
    ]
    start = (philox_oracle((0, 0, 1, call), key)[0] * num_classes) >> 32 if num_classes else 0
    features = torch.zeros(capacity, dim, dtype=torch.float64)
    labels = torch.full((capacity,), -1, dtype=torch.long)
    slot, requested = 0, 0
    for pos in range(num_classes):
        c = (start + pos) % num_classes
        if not selected[c]:
            continue
        requested += k
        for j in range(k):
            if slot >= capacity:
                break
            labels[slot] = c
            for d in range(dim):
                words = philox_oracle((d // 4, c, 2 + j, call), key)
                a, b = (words[0], words[1]) if d % 4 < 2 else (words[2], words[3])
                u1, u2 = (a + 1) / 2.0**32, (b + 1) / 2.0**32
                r, theta = math.sqrt(-2 * math.log(u1)), 2 * math.pi * u2
                z = r * math.cos(theta) if d % 2 == 0 else r * math.sin(theta)
                features[slot, d] = float(mean[c, d]) + float(std[c, d]) * z
            slot += 1
    return features, labels, (slot, requested)
