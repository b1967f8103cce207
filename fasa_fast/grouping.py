"""Class grouping for FASA's group-wise sampling adaptation (method §4).

``group_classes`` returns a group id per class. The rules (``GROUPING_METHODS``):

- ``"hdbscan"`` (default): scikit-learn's HDBSCAN on the Fisher-distance matrix of the seen
  classes' running statistics (``fasa_fast.ops.fisher_distance``), ``min_cluster_size=2``;
  outliers become groups of their own. HDBSCAN needs no distance threshold: it keeps the
  clusters that persist over every density level, so it adapts to Fisher distances whose scale
  changes during training, and it never returns one cluster holding every class
  (``allow_single_cluster=False``). Chosen by ``benchmarks/grouping_measurement.py`` on learned
  statistics (``docs/reports/grouping_measurement.md``).
- ``"dbscan"`` (the paper's density-based rule): DBSCAN on the same matrix. The paper gives no
  parameters; ``eps`` defaults to the ``eps_quantile`` quantile of every class's distance to its
  ``min_samples``-th nearest neighbour. On learned features the default quantile (0.95) chains
  overlapping clusters into one group (``docs/reports/grouping_measurement.md``).
- ``"affinity"``: scikit-learn's AffinityPropagation, on the negative squared Euclidean distance
  between class means (``affinity_distance="euclidean"``, scikit-learn's own affinity) or on the
  negative Fisher distance (``"fisher"``), damping 0.9. This is this project's variant, not the
  public code's (which passes squared distances as similarities, method §5).
- ``"single"``: every seen class in one group (the adaptation scales all probabilities alike);
  ``"per-class"``: every seen class its own group (no grouping). Both are ablations.

Never-seen classes (``seen == 0``) have no statistics: they get group ``-1``, which the engine
reads as "hold the probability" (they are not sampled either, until seen).

Groups without adaptation data cannot be steered: with ``has_data`` given, each class of such a
group joins the group of its nearest class (in the distance the method groups by: Fisher
distance, or squared Euclidean distance of the means for ``affinity_distance="euclidean"``)
that is in a group with data. At LVIS scale this is what lets the rare classes move at all: most
have no held-out image (``docs/method.md`` §4.5).
"""

from __future__ import annotations

import numpy as np
import torch

from fasa_fast.ops import fisher_distance

GROUPING_METHODS = ("hdbscan", "dbscan", "affinity", "single", "per-class")
DEFAULT_GROUPING = "hdbscan"
AFFINITY_DISTANCES = ("euclidean", "fisher")
# the parameters each method reads; any other one given is an error, not silently ignored
_METHOD_PARAMS = {
    "hdbscan": {"min_cluster_size", "fisher_eps"},
    "dbscan": {"eps", "eps_quantile", "min_samples", "fisher_eps"},
    "affinity": {"damping", "affinity_distance", "fisher_eps"},
    "single": set(),
    "per-class": set(),
}


def _outliers_as_singletons(labels: np.ndarray) -> np.ndarray:
    """Number each outlier (label -1) as a group of its own, after the clusters, in class order."""
    labels = labels.copy()
    noise = labels < 0
    labels[noise] = labels.max(initial=-1) + 1 + np.arange(int(noise.sum()))
    return labels


def _hdbscan_groups(distance: np.ndarray, min_cluster_size: int) -> np.ndarray:
    from sklearn.cluster import HDBSCAN

    n = distance.shape[0]
    if n < max(2, min_cluster_size):  # HDBSCAN needs at least min_cluster_size points
        return np.arange(n)
    model = HDBSCAN(metric="precomputed", min_cluster_size=min_cluster_size, copy=True)
    return _outliers_as_singletons(model.fit(distance).labels_)


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
    return _outliers_as_singletons(labels)


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


def _affinity_groups(similarity: np.ndarray, damping: float, seed: int):
    """Affinity propagation on a precomputed similarity (higher = more alike)."""
    from sklearn.cluster import AffinityPropagation

    if similarity.shape[0] == 1:
        return np.zeros(1, dtype=np.int64)
    model = AffinityPropagation(
        affinity="precomputed", damping=damping, random_state=seed, max_iter=500
    )
    labels = model.fit(similarity).labels_
    # scikit-learn labels every class -1 only when no exemplar emerged at all (an unconverged
    # fit that found exemplars still returns its labels, with a ConvergenceWarning)
    if (labels < 0).any():
        labels = np.arange(similarity.shape[0])
    return labels


def check_grouping(method: str, params: dict) -> None:
    """Refuse an unknown method, or a parameter (not ``None``) that ``method`` does not read, so
    that a misspelt or misplaced setting fails when FASA is built, not epochs later."""
    if method not in GROUPING_METHODS:
        raise ValueError(f"grouping: expected one of {GROUPING_METHODS}, got {method!r}")
    known = set().union(*_METHOD_PARAMS.values(), {"seed", "has_data"})
    unknown = sorted(set(params) - known)
    if unknown:
        raise ValueError(f"grouping parameters {unknown}: unknown; known: {sorted(known)}")
    given = {name for name, value in params.items() if value is not None}
    unused = sorted(given - _METHOD_PARAMS[method] - {"seed", "has_data"})
    if unused:
        users = {p: [m for m, ps in _METHOD_PARAMS.items() if p in ps] for p in unused}
        raise ValueError(
            f"grouping parameters {unused}: not used by grouping {method!r} (they belong to "
            f"{users}); {method!r} takes {sorted(_METHOD_PARAMS[method]) or 'none'}"
        )


def group_classes(
    mean: torch.Tensor,
    std: torch.Tensor,
    seen: torch.Tensor,
    method: str = DEFAULT_GROUPING,
    *,
    min_cluster_size: int | None = None,
    eps: float | None = None,
    eps_quantile: float | None = None,
    min_samples: int | None = None,
    damping: float | None = None,
    affinity_distance: str | None = None,
    fisher_eps: float | None = None,
    seed: int | None = None,
    has_data: torch.Tensor | None = None,
) -> torch.Tensor:
    """Group ids ``[C]`` int64 (on CPU) for seen classes, ``-1`` for never-seen.

    Parameters of a method other than ``method`` are refused (``seed``, the run's seed, is
    taken by every method and used by affinity propagation's tie-breaking noise). Defaults: ``min_cluster_size=2``
    (hdbscan); ``eps=None`` (from the k-distances), ``eps_quantile=0.95``, ``min_samples=3``
    (dbscan); ``damping=0.9``, ``affinity_distance="euclidean"``, ``seed=0`` (affinity);
    ``fisher_eps=1e-6`` (the Fisher distance of hdbscan, dbscan and affinity on "fisher").

    ``has_data`` (``[C]`` bool): the classes with adaptation data; when given, classes of groups
    without data join the nearest group with data (module docstring), so group ids need not be
    contiguous.
    """
    check_grouping(
        method,
        dict(
            min_cluster_size=min_cluster_size,
            eps=eps,
            eps_quantile=eps_quantile,
            min_samples=min_samples,
            damping=damping,
            affinity_distance=affinity_distance,
            fisher_eps=fisher_eps,
            seed=seed,
        ),
    )
    min_cluster_size = 2 if min_cluster_size is None else int(min_cluster_size)
    eps_quantile = 0.95 if eps_quantile is None else float(eps_quantile)
    min_samples = 3 if min_samples is None else int(min_samples)
    damping = 0.9 if damping is None else float(damping)
    affinity_distance = "euclidean" if affinity_distance is None else affinity_distance
    fisher_eps = 1e-6 if fisher_eps is None else fisher_eps
    if min_cluster_size < 2:
        raise ValueError(f"min_cluster_size: expected >= 2, got {min_cluster_size}")
    if min_samples < 1:
        raise ValueError(f"min_samples: expected >= 1, got {min_samples}")
    if not 0.0 <= eps_quantile <= 1.0:
        raise ValueError(f"eps_quantile: expected a value in [0, 1], got {eps_quantile}")
    if affinity_distance not in AFFINITY_DISTANCES:
        raise ValueError(
            f"affinity_distance: expected one of {AFFINITY_DISTANCES}, got {affinity_distance!r}"
        )
    groups = torch.full((mean.shape[0],), -1, dtype=torch.int64)
    seen_idx = torch.nonzero(seen.cpu() > 0).flatten()
    if seen_idx.numel() == 0:
        return groups
    if has_data is not None and has_data.shape != (mean.shape[0],):
        raise ValueError(
            f"has_data: expected shape ({mean.shape[0]},) (one flag per class), got "
            f"{tuple(has_data.shape)}"
        )
    n = seen_idx.numel()
    if method in ("single", "per-class"):
        labels = np.zeros(n, dtype=np.int64) if method == "single" else np.arange(n)
        groups[seen_idx] = torch.as_tensor(labels, dtype=torch.int64)
        return groups  # nothing to attach: every group has data if any class has
    if method == "affinity" and affinity_distance == "euclidean":
        means = mean.detach().index_select(0, seen_idx.to(mean.device)).double().cpu()
        distance = torch.cdist(means, means).pow(2).numpy()
    else:
        distance = fisher_distance(mean, std, fisher_eps, classes=seen_idx.to(mean.device))
        distance = distance.double().cpu().numpy()
    if method == "hdbscan":
        labels = _hdbscan_groups(distance, min_cluster_size)
    elif method == "dbscan":
        labels = _dbscan_groups(distance, eps, eps_quantile, min_samples)
    else:
        labels = _affinity_groups(-distance, damping, 0 if seed is None else int(seed))
    if has_data is not None:
        data = has_data.cpu().bool()[seen_idx].numpy()
        labels = _attach_to_groups_with_data(labels, distance, data)
    groups[seen_idx] = torch.as_tensor(labels, dtype=torch.int64)
    return groups


def group_sizes(groups: torch.Tensor) -> torch.Tensor:
    """Sizes of the groups of ``groups`` (ids ``>= 0``; never-seen classes are left out)."""
    ids = groups[groups >= 0]
    if ids.numel() == 0:
        return torch.zeros(0, dtype=torch.int64)
    return torch.unique(ids, return_counts=True)[1]
