"""``fisher_distance``: the Fisher-ratio distance matrix between classes (method §4, Eq. 5)."""

from __future__ import annotations

import torch

from fasa_fast.ops._validate import check_dim, check_dtype, check_same_device, check_tensor


def fisher_distance(
    mean: torch.Tensor,
    std: torch.Tensor,
    eps: float = 1e-6,
    classes: torch.Tensor | None = None,
) -> torch.Tensor:
    """Pairwise ``d_ij = mean_k (mu_ik - mu_jk)^2 / (sigma_ik^2 + sigma_jk^2 + eps)``.

    Args:
        mean, std: ``[C, D]`` float32 class statistics (no gradient flows through them).
        eps: added to the variance sum; with ``eps = 0`` two classes with a zero variance in
            the same dimension give NaN/inf, as the formula does.
        classes: optional ``[K]`` integer class indices; the result is then ``[K, K]`` over
            those classes only.

    Returns:
        ``[C, C]`` (or ``[K, K]``) float32, symmetric, zero diagonal. Never materialises
        ``C x C x D``.
    """
    check_tensor("mean", mean)
    check_tensor("std", std)
    check_dim("mean", mean, 2, "[C, D]")
    check_dtype("mean", mean, (torch.float32,))
    check_dtype("std", std, (torch.float32,))
    if std.shape != mean.shape:
        raise ValueError(
            f"std: expected shape {tuple(mean.shape)} (as mean), got {tuple(std.shape)}"
        )
    if mean.shape[1] == 0:
        raise ValueError("mean: expected D >= 1 feature dimensions, got 0")
    check_same_device("mean", mean, std=std)
    if float(eps) < 0:
        raise ValueError(f"eps: expected >= 0, got {eps}")
    if classes is not None:
        check_tensor("classes", classes)
        check_dim("classes", classes, 1, "[K]")
        if classes.dtype not in (torch.int64, torch.int32):
            raise TypeError(f"classes: expected int64 or int32 indices, got {classes.dtype}")
        check_same_device("mean", mean, classes=classes)
        mean = mean.index_select(0, classes)
        std = std.index_select(0, classes)
    return torch.ops.fasa_fast.fisher_distance(mean, std, float(eps))
