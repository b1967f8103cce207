"""``segmented_stats_update_``: the per-class running mean/std update of FASA (method §1)."""

from __future__ import annotations

import torch

from fasa_fast.ops._validate import (
    FEATURE_DTYPES,
    LABEL_DTYPES,
    check_dim,
    check_dtype,
    check_feature_dim,
    check_same_device,
    check_state,
    check_tensor,
)


def segmented_stats_update_(
    features: torch.Tensor,
    labels: torch.Tensor,
    mean: torch.Tensor,
    std: torch.Tensor,
    seen: torch.Tensor,
    momentum: float = 0.1,
    momentum_on_var: bool = False,
) -> None:
    """Update the per-class running mean/std in place from one batch (no host sync).

    Args:
        features: ``[N, D]`` float32/float16/bfloat16 (``D >= 1``), any strides; no gradient
            flows from here.
        labels: ``[N]`` int64/int32. Rows labelled outside ``[0, C)`` (mmdet's background ``C``,
            negative ignore labels) are skipped inside the op.
        mean, std: ``[C, D]`` float32 contiguous running statistics, updated in place.
        seen: ``[C]`` int64, batches each class appeared in, incremented in place.
        momentum: weight of the batch statistics, in ``[0, 1]``.
        momentum_on_var: average the variance (public reference code) instead of the std.

    See ``fasa_fast.ops.reference.segmented_stats_update_reference`` for the exact semantics.
    """
    check_tensor("features", features)
    check_tensor("labels", labels)
    check_tensor("mean", mean)
    check_tensor("std", std)
    check_tensor("seen", seen)
    check_dim("features", features, 2, "[N, D]")
    check_dim("labels", labels, 1, "[N]")
    check_dim("mean", mean, 2, "[C, D]")
    check_dtype("features", features, FEATURE_DTYPES)
    check_dtype("labels", labels, LABEL_DTYPES)
    check_dtype("mean", mean, (torch.float32,))
    check_dtype("std", std, (torch.float32,))
    check_dtype("seen", seen, (torch.int64,))
    if labels.shape[0] != features.shape[0]:
        raise ValueError(
            f"labels: expected length N={features.shape[0]} (rows of features), got {labels.shape[0]}"
        )
    if mean.shape[1] != features.shape[1]:
        raise ValueError(
            f"mean: expected D={features.shape[1]} columns (the feature dim), got shape {tuple(mean.shape)}"
        )
    if std.shape != mean.shape:
        raise ValueError(
            f"std: expected shape {tuple(mean.shape)} (as mean), got {tuple(std.shape)}"
        )
    if seen.shape != (mean.shape[0],):
        raise ValueError(
            f"seen: expected shape ({mean.shape[0]},) (C of mean), got {tuple(seen.shape)}"
        )
    check_feature_dim("mean", mean)
    check_same_device("mean", mean, features=features, labels=labels, std=std, seen=seen)
    for name, tensor in (("mean", mean), ("std", std), ("seen", seen)):
        check_state(name, tensor)
    if not 0.0 <= float(momentum) <= 1.0:
        raise ValueError(f"momentum: expected a value in [0, 1], got {momentum}")
    torch.ops.fasa_fast.segmented_stats_update_(
        features.detach(), labels, mean, std, seen, float(momentum), bool(momentum_on_var)
    )
