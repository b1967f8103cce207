"""``fisher_distance``: the Fisher-ratio distance matrix between classes (method §4, Eq. 5)."""

from __future__ import annotations

import torch

from fasa_fast.ops._registry import declare_op, not_differentiable
from fasa_fast.ops._validate import (
    FLOAT32,
    LABEL_DTYPES,
    check_feature_dim,
    check_same_device,
    check_shape,
    check_tensor,
)


def _fake(mean, std, eps):
    return mean.new_empty(mean.shape[0], mean.shape[0])


declare_op(
    "fisher_distance",
    "(Tensor mean, Tensor std, float eps) -> Tensor",
    fake=_fake,
    reference="fasa_fast.ops.reference:fisher_distance_reference",
    triton="fasa_fast.kernels.fisher_distance:fisher_distance_triton",
    backward=not_differentiable("fisher_distance"),
)


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
    check_tensor("mean", mean, layout="[C, D]", dtypes=FLOAT32)
    check_tensor("std", std, dtypes=FLOAT32)
    check_shape("std", std, tuple(mean.shape), "as mean")
    check_feature_dim("mean", mean)
    check_same_device("mean", mean, std=std)
    if float(eps) < 0:
        raise ValueError(f"eps: expected >= 0, got {eps}")
    if classes is not None:
        check_tensor("classes", classes, layout="[K]", dtypes=LABEL_DTYPES)
        check_same_device("mean", mean, classes=classes)
        mean = mean.index_select(0, classes)
        std = std.index_select(0, classes)
    return torch.ops.fasa_fast.fisher_distance(mean, std, float(eps))
