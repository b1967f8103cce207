"""``sample_virtual_features``: FASA's Bernoulli-masked Gaussian virtual features (method §2)."""

from __future__ import annotations

import torch

from fasa_fast.ops._registry import declare_op
from fasa_fast.ops._validate import (
    FLOAT32,
    INT64,
    check_feature_dim,
    check_same_device,
    check_shape,
    check_state,
    check_tensor,
)


def _fake(mean, std, seen, prob, rng_state, k, capacity, key=None):
    return (
        mean.new_empty(capacity, mean.shape[1]),
        mean.new_empty(capacity, dtype=torch.long),
        mean.new_empty(2, dtype=torch.long),
    )


declare_op(
    "sample_virtual_features",
    "(Tensor mean, Tensor std, Tensor seen, Tensor prob, Tensor(a!) rng_state, int k, "
    "int capacity, Tensor? key=None) -> (Tensor, Tensor, Tensor)",
    fake=_fake,
    reference="fasa_fast.ops.reference:sample_virtual_features_reference",
    triton="fasa_fast.kernels.sample_virtual_features:sample_virtual_features_triton",
)


def make_rng_state(seed: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """A fresh ``rng_state`` for ``sample_virtual_features``: ``[seed, call counter = 0]``."""
    if not -(2**63) <= int(seed) < 2**63:
        raise ValueError(f"seed: expected a 64-bit integer, got {seed}")
    return torch.tensor([int(seed), 0], dtype=torch.int64, device=device)


def sample_virtual_features(
    mean: torch.Tensor,
    std: torch.Tensor,
    seen: torch.Tensor,
    prob: torch.Tensor,
    rng_state: torch.Tensor,
    k: int = 1,
    capacity: int = 64,
    key: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Bernoulli(``prob``) class selection and ``k`` Gaussian features per selected class.

    Shapes are fixed by ``capacity`` and nothing is read back to the host, so a training step
    that calls this stays CUDA-graph capturable. One dispatched op; on CUDA the native and the
    Triton backends launch two kernels (the selection, then the rows), plus the allocation's
    fills.

    Args:
        mean, std: ``[C, D]`` float32 running class statistics (``D >= 1``).
        seen: ``[C]`` int64; only classes with ``seen > 0`` are eligible.
        prob: ``[C]`` float32 selection probabilities (values outside [0, 1] act as clamped).
        rng_state: ``[2]`` int64 ``(seed, call counter)`` on the same device, advanced in place;
            the same state gives the same draw on every backend (see ``make_rng_state``).
        k: features per selected class (>= 1).
        capacity: rows of the output (>= 0). Selected classes are packed ``k`` rows each in a
            cyclic class order that starts at a random class each call, and rows past
            ``capacity`` are dropped: the first ``capacity // k`` selected classes in that
            order keep all ``k`` rows, the next keeps ``capacity % k`` of them, later ones
            none; ``counts`` reports how many rows were requested.
        key: ``[1]`` int64 on the same device, or None: the Philox key of the draw in place of
            ``rng_state[0]`` (the call counter is still ``rng_state[1]``'s). ``FASA`` draws
            with its stream's key this way while checkpointing ``[seed, call]``.

    Returns:
        ``features [capacity, D]`` float32 (zero rows past the valid ones), ``labels
        [capacity]`` int64 (-1 marks padding), ``counts [2]`` int64 = (rows filled, rows
        requested). No gradient flows into the statistics.
    """
    check_tensor("mean", mean, layout="[C, D]", dtypes=FLOAT32)
    check_tensor("std", std, dtypes=FLOAT32)
    check_tensor("seen", seen, dtypes=INT64)
    check_tensor("prob", prob, dtypes=FLOAT32)
    check_tensor("rng_state", rng_state, dtypes=INT64)
    num_classes = mean.shape[0]
    check_shape("std", std, tuple(mean.shape), "as mean")
    check_shape("seen", seen, (num_classes,), "C of mean")
    check_shape("prob", prob, (num_classes,), "C of mean")
    check_shape("rng_state", rng_state, (2,), "seed, call counter")
    check_feature_dim("mean", mean)
    check_same_device("mean", mean, std=std, seen=seen, prob=prob, rng_state=rng_state)
    check_state("rng_state", rng_state)
    if key is not None:
        check_tensor("key", key, dtypes=INT64)
        check_shape("key", key, (1,), "one 64-bit Philox key")
        check_same_device("mean", mean, key=key)
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k: expected an int >= 1, got {k!r}")
    if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 0:
        raise ValueError(f"capacity: expected an int >= 0, got {capacity!r}")
    return torch.ops.fasa_fast.sample_virtual_features(
        mean.detach(), std.detach(), seen, prob.detach(), rng_state, k, capacity, key
    )
