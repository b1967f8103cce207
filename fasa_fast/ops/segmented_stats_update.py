"""``segmented_stats_update_``: the per-class running mean/std update of FASA (method §1)."""

from __future__ import annotations

import torch

from fasa_fast.ops._registry import declare_op
from fasa_fast.ops._validate import (
    FEATURE_DTYPES,
    FLOAT32,
    INT64,
    LABEL_DTYPES,
    check_feature_dim,
    check_same_device,
    check_shape,
    check_state,
    check_tensor,
)


def _fake(features, labels, mean, std, seen, momentum, momentum_on_var, nonfinite=None):
    return None


declare_op(
    "segmented_stats_update_",
    "(Tensor features, Tensor labels, Tensor(a!) mean, Tensor(b!) std, Tensor(c!) seen, "
    "float momentum, bool momentum_on_var, Tensor(d!)? nonfinite=None) -> ()",
    fake=_fake,
    reference="fasa_fast.ops.reference:segmented_stats_update_reference",
    triton="fasa_fast.kernels.segmented_stats_update:segmented_stats_update_triton",
)


def segmented_stats_update_(
    features: torch.Tensor,
    labels: torch.Tensor,
    mean: torch.Tensor,
    std: torch.Tensor,
    seen: torch.Tensor,
    momentum: float = 0.1,
    momentum_on_var: bool = False,
    nonfinite: torch.Tensor | None = None,
) -> None:
    """Update the per-class running mean/std in place from one batch (no host sync).

    One dispatched op; on CUDA the native backend launches one kernel, the Triton backend two
    (the rows' finiteness flags, the update) after the launcher's grouping of the rows (a sort,
    an ``arange`` and a binary search).

    Args:
        features: ``[N, D]`` float32/float16/bfloat16 (``D >= 1``), any strides; no gradient
            flows from here.
        labels: ``[N]`` int64/int32. Rows labelled outside ``[0, C)`` (mmdet's background ``C``,
            negative ignore labels) are skipped inside the op.
        mean, std: ``[C, D]`` float32 contiguous running statistics, updated in place.
        seen: ``[C]`` int64, batches each class appeared in, incremented in place.
        momentum: weight of the batch statistics, in ``[0, 1]``.
        momentum_on_var: average the variance (public reference code) instead of the std.
        nonfinite: ``[1]`` int64 counter, or None. A foreground row (label in ``[0, C)``) with a
            NaN or an Inf in any of its features is always skipped, so one bad row never
            poisons a class's statistics (method §1.3); when given, ``nonfinite[0]`` is
            increased by the number of such rows, on the device.

    See ``fasa_fast.ops.reference.segmented_stats_update_reference`` for the exact semantics.
    """
    check_tensor("features", features, layout="[N, D]", dtypes=FEATURE_DTYPES)
    check_tensor("labels", labels, layout="[N]", dtypes=LABEL_DTYPES)
    check_tensor("mean", mean, layout="[C, D]", dtypes=FLOAT32)
    check_tensor("std", std, dtypes=FLOAT32)
    check_tensor("seen", seen, dtypes=INT64)
    num_rows, num_classes = features.shape[0], mean.shape[0]
    check_shape("labels", labels, (num_rows,), "N rows of features")
    check_shape("mean", mean, (num_classes, features.shape[1]), "D columns of features")
    check_shape("std", std, tuple(mean.shape), "as mean")
    check_shape("seen", seen, (num_classes,), "C of mean")
    check_feature_dim("mean", mean)
    check_same_device("mean", mean, features=features, labels=labels, std=std, seen=seen)
    for name, tensor in (("mean", mean), ("std", std), ("seen", seen)):
        check_state(name, tensor)
    if nonfinite is not None:
        check_tensor("nonfinite", nonfinite, dtypes=INT64)
        check_shape("nonfinite", nonfinite, (1,), "one counter")
        check_same_device("mean", mean, nonfinite=nonfinite)
        check_state("nonfinite", nonfinite)
    if not 0.0 <= float(momentum) <= 1.0:
        raise ValueError(f"momentum: expected a value in [0, 1], got {momentum}")
    torch.ops.fasa_fast.segmented_stats_update_(
        features.detach(),
        labels,
        mean,
        std,
        seen,
        float(momentum),
        bool(momentum_on_var),
        nonfinite,
    )
