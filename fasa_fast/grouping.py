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

Groups without adaptation data cannot be steered: with ``has_data`` given, each class of such a
group joins the group of its nearest class (in the distance the method groups by: Fisher
distance for DBSCAN, squared Euclidean distance of the means for affinity propagation) that is
in a group with data. At LVIS scale this is what lets the rare classes move at all: most have no
held-out image, and DBSCAN leaves many of them as singleton outliers (``docs/method.md``).
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


def _attach_to_groups_with_data(
    labels: np.ndarray, distance: np.ndarray, has_data: np.ndarray
) -> np.ndarray:
    """Move the classes of groups without data into the group of their nearest class with data."""
    steerable = np.isin(labels, np.unique(labels[has_data]))
    if steerable.all() or not steerable.any():
        return labels
    out = labels.copy()
    candidates = np.flatnonzero(steerable)
    for i in np.flatnonzero(~steerable):
        out[i] = labels[candidates[np.argmin(distance[i, candidates])]]
    return out


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
    has_data: torch.Tensor | None = None,
) -> torch.Tensor:
    """Group ids ``[C]`` int64 (on CPU) for seen classes, ``-1`` for never-seen.

    ``has_data`` (``[C]`` bool): the classes with adaptation data; when given, classes of groups
    without data join the nearest group with data (module docstring), so group ids need not be
    contiguous.
    """
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
    if has_data is not None and has_data.shape != (mean.shape[0],):
        raise ValueError(
            f"has_data: expected shape ({mean.shape[0]},) (one flag per class), got "
            f"{tuple(has_data.shape)}"
        )
    if method == "dbscan":
        distance = fisher_distance(mean, std, fisher_eps, classes=seen_idx.to(mean.device))
        distance = distance.double().cpu().numpy()
        labels = _dbscan_groups(distance, eps, eps_quantile, min_samples)
    else:
        means = mean.detach().index_select(0, seen_idx.to(mean.device)).double().cpu().numpy()
        labels = _affinity_groups(means, damping, seed)
        if has_data is not None:
            distance = torch.cdist(torch.from_numpy(means), torch.from_numpy(means)).pow(2).numpy()
    if has_data is not None:
        data = has_data.cpu().bool()[seen_idx].numpy()
        labels = _attach_to_groups_with_data(labels, distance, data)
    groups[seen_idx] = torch.as_tensor(labels, dtype=torch.int64)
    return groups
