"""Class grouping for FASA's group-wise sampling adaptation (method §4).

``group_classes`` returns a group id per class:

- ``"dbscan"`` (paper, default): DBSCAN on the Fisher-distance matrix of the seen classes'
  running statistics (``fasa_fast.ops.fisher_distance``). The paper gives no parameters. Fisher
  distances have no fixed scale (they depend on the features), so ``eps`` defaults to a quantile
  of every class's distance to its ``min_samples``-th nearest neighbour, the usual k-distance
  heuristic; the defaults (``min_samples=3``, ``eps_quantile=0.95``) come from the study in
  ``docs/grouping_study.md``.
- ``"affinity"`` (public reference code): scikit-learn's AffinityPropagation on the negative
  squared Euclidean distance between class means.

Never-seen classes (``seen == 0``) have no statistics: they get group ``-1``, which the engine
reads as "hold the probability" (they are not sampled either, until seen). DBSCAN's outliers
(noise points) become groups of their own, so each is steered by its own loss.
"""

from __future__ import annotations

import numpy as np
import torch

from fasa_fast.ops import fisher_distance

GROUPING_METHODS = ("dbscan", "affinity")


def _dbscan_groups(distance: np.ndarray, eps: float | None, eps_quantile: float, min_samples: int):
    from sklearn.cluster import DBSCAN

    n = distance.shape[0]
    if eps is None:
        k = min(min_samples, n - 1)
        # k-th nearest neighbour distance of each class (column 0 of the sort is the class itself)
        knn = np.sort(distance, axis=1)[:, k] if k > 0 else np.zeros(n)
        eps = float(np.quantile(knn, eps_quantile))
    eps = max(eps, np.finfo(np.float64).tiny)  # DBSCAN requires eps > 0
    labels = DBSCAN(eps=eps, min_samples=min_samples, metric="precomputed").fit(distance).labels_
    noise = labels < 0
    labels[noise] = labels.max(initial=-1) + 1 + np.arange(int(noise.sum()))  # singletons
    return labels


def _affinity_groups(means: np.ndarray, damping: float, seed: int):
    from sklearn.cluster import AffinityPropagation

    if means.shape[0] == 1:
        return np.zeros(1, dtype=np.int64)
    model = AffinityPropagation(damping=damping, random_state=seed, max_iter=500)
    labels = model.fit(means).labels_
    if (labels < 0).any():  # did not converge: every class on its own
        labels = np.arange(means.shape[0])
    return labels


def group_classes(
    mean: torch.Tensor,
    std: torch.Tensor,
    seen: torch.Tensor,
    method: str = "dbscan",
    *,
    eps: float | None = None,
    eps_quantile: float = 0.95,
    min_samples: int = 3,
    fisher_eps: float = 1e-6,
    damping: float = 0.9,
    seed: int = 0,
) -> torch.Tensor:
    """Group ids ``[C]`` int64 (on CPU): ``0..G-1`` for seen classes, ``-1`` for never-seen."""
    if method not in GROUPING_METHODS:
        raise ValueError(f"method: expected one of {GROUPING_METHODS}, got {method!r}")
    if min_samples < 1:
        raise ValueError(f"min_samples: expected >= 1, got {min_samples}")
    if not 0.0 <= eps_quantile <= 1.0:
        raise ValueError(f"eps_quantile: expected a value in [0, 1], got {eps_quantile}")
    groups = torch.full((mean.shape[0],), -1, dtype=torch.int64)
    seen_idx = torch.nonzero(seen.cpu() > 0).flatten()
    if seen_idx.numel() == 0:
        return groups
    if method == "dbscan":
        distance = fisher_distance(mean, std, fisher_eps, classes=seen_idx.to(mean.device))
        labels = _dbscan_groups(distance.double().cpu().numpy(), eps, eps_quantile, min_samples)
    else:
        means = mean.detach().index_select(0, seen_idx.to(mean.device)).double().cpu().numpy()
        labels = _affinity_groups(means, damping, seed)
    groups[seen_idx] = torch.as_tensor(labels, dtype=torch.int64)
    return groups
