"""Class grouping rules that mutation testing found unpinned: the k-distance choice of DBSCAN's
``eps``, the numbering of groups and outliers, attaching data-less groups to the nearest class,
the defaults and bounds of ``group_classes``. Expected groups are worked out by hand from
distances between points on a line (DBSCAN's rule: a core point has ``min_samples`` points,
itself included, within ``eps``; clusters grow from core points)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import fasa_fast.grouping as grouping
from fasa_fast.grouping import _attach_to_groups_with_data, _dbscan_groups, group_classes


def line(*positions) -> np.ndarray:
    """Distances |x_i - x_j| of points on a line."""
    x = np.asarray(positions, dtype=np.float64)
    return np.abs(x[:, None] - x[None, :])


@pytest.mark.parametrize(
    "positions, quantile, min_samples, expected, why",
    [
        # k = 2: 2nd-nearest distances [2, 1, 2, 8, 9], median 2 -> eps 2: {0, 1, 2} and {10, 11}
        ((0, 1, 2, 10, 11), 0.5, 2, [0, 0, 0, 1, 1], "eps = median k-distance"),
        # k = 1: nearest distances all 1 -> eps 1 (a k of 0 would give eps ~ 0: five singletons)
        ((0, 1, 2, 10, 11), 1.0, 1, [0, 0, 0, 1, 1], "k = min_samples = 1"),
        # k = min(3, n - 1) = 2: farthest distances [5, 4, 5], quantile 0 -> eps 4; point 1 has
        # all three within 4: one cluster (with k = 1, eps 1 and three outliers)
        ((0, 1, 5), 0.0, 3, [0, 0, 0], "k capped at n - 1"),
    ],
)
def test_dbscan_eps_from_the_k_distance_quantile(positions, quantile, min_samples, expected, why):
    got = _dbscan_groups(line(*positions), None, quantile, min_samples).tolist()
    assert got == expected, f"{why}: expected {expected}, got {got}"


def test_dbscan_numbers_clusters_then_each_outlier():
    # eps 1.5, min_samples 2: clusters {0, 1, 2} and {30, 31}; 10 and 20 are outliers, each its
    # own group, numbered after the clusters in class order
    got = _dbscan_groups(line(0, 1, 2, 10, 20, 30, 31), 1.5, 0.5, 2).tolist()
    assert got == [0, 0, 0, 2, 3, 1, 1], f"expected [0, 0, 0, 2, 3, 1, 1], got {got}"
    # no cluster at all: the outliers are groups 0, 1, 2
    got = _dbscan_groups(line(0, 10, 20), 1.0, 0.5, 2).tolist()
    assert got == [0, 1, 2], f"only outliers: expected [0, 1, 2], got {got}"


def test_dbscan_with_a_zero_eps_still_runs():
    # all classes at the same point: every k-distance is 0, eps is lifted to the smallest
    # positive float (scikit-learn refuses 0) and the identical points form one cluster
    assert _dbscan_groups(line(3, 3, 3), None, 0.5, 2).tolist() == [0, 0, 0]


def test_dataless_group_joins_the_group_of_its_nearest_class_with_data():
    labels = np.array([0, 1, 2, 2])
    has_data = np.array([True, True, False, False])
    distance = line(0, 10, 9, 12)  # class 2 is nearest to class 1, class 3 too
    got = _attach_to_groups_with_data(labels, distance, has_data).tolist()
    assert got == [0, 1, 1, 1], f"expected [0, 1, 1, 1], got {got}"
    # nothing to attach to, or nothing to attach: unchanged
    assert _attach_to_groups_with_data(labels, distance, np.zeros(4, bool)).tolist() == [0, 1, 2, 2]
    assert _attach_to_groups_with_data(labels, distance, np.ones(4, bool)).tolist() == [0, 1, 2, 2]


def one_dimensional(*positions):
    """Statistics whose Fisher distances are squared differences of the positions: one feature,
    std sqrt(1/2), so that var_i + var_j = 1 (plus the op's eps)."""
    mean = torch.tensor(positions, dtype=torch.float32)[:, None]
    std = torch.full_like(mean, math.sqrt(0.5))
    return mean, std, torch.ones(len(positions), dtype=torch.long)


def test_affinity_groups_attach_by_squared_distance_of_the_means():
    # three clear clusters of three classes (as test_engine's clear-cluster test)
    gen = torch.Generator().manual_seed(0)
    centers = torch.randn(3, 8, generator=gen) * 20
    mean = centers.repeat_interleave(3, 0) + torch.randn(9, 8, generator=gen) * 0.1
    std, seen = torch.ones(9, 8), torch.ones(9, dtype=torch.long)
    plain = group_classes(mean, std, seen, "affinity")
    assert len(set(plain.tolist())) == 3 and all(
        len(set(plain[i : i + 3].tolist())) == 1 for i in (0, 3, 6)
    ), plain
    # only the first two clusters have data: each class of the third joins the group of its
    # nearest class with data, by squared Euclidean distance of the means (worked out here)
    has_data = torch.tensor([True] * 6 + [False] * 3)
    got = group_classes(mean, std, seen, "affinity", has_data=has_data)
    assert got[:6].tolist() == plain[:6].tolist()
    for i in range(6, 9):
        nearest = min(range(6), key=lambda j: float(((mean[i] - mean[j]) ** 2).sum()))
        assert got[i] == plain[nearest], f"class {i}: expected the group of class {nearest}"


def test_single_seen_class_is_group_zero_for_dbscan():
    mean, std, _ = one_dimensional(1.0, 2.0, 3.0)
    got = group_classes(mean, std, torch.tensor([0, 4, 0]), "dbscan").tolist()
    assert got == [-1, 0, -1], f"expected [-1, 0, -1], got {got}"


def test_group_classes_defaults_reach_dbscan_and_fisher(monkeypatch):
    seen_args = {}
    fisher = grouping.fisher_distance

    def recording_fisher(mean, std, eps=None, classes=None):
        seen_args["fisher_eps"] = eps
        return fisher(mean, std, eps, classes=classes)

    def recording_dbscan(distance, eps, eps_quantile, min_samples):
        seen_args.update(eps=eps, eps_quantile=eps_quantile, min_samples=min_samples)
        return np.zeros(distance.shape[0], dtype=np.int64)

    monkeypatch.setattr(grouping, "fisher_distance", recording_fisher)
    monkeypatch.setattr(grouping, "_dbscan_groups", recording_dbscan)
    mean, std, seen = one_dimensional(0.0, 1.0, 2.0)
    group_classes(mean, std, seen, "dbscan")
    assert seen_args == dict(fisher_eps=1e-6, eps=None, eps_quantile=0.95, min_samples=3), seen_args
    group_classes(
        mean, std, seen, "dbscan", eps=2.0, eps_quantile=0.25, min_samples=5, fisher_eps=0.5
    )
    assert seen_args == dict(fisher_eps=0.5, eps=2.0, eps_quantile=0.25, min_samples=5), seen_args


def test_group_classes_affinity_defaults(monkeypatch):
    calls = []
    monkeypatch.setattr(
        grouping,
        "_affinity_groups",
        lambda similarity, damping, seed: (
            calls.append((similarity.tolist(), damping, seed))
            or np.zeros(len(similarity), dtype=np.int64)
        ),
    )
    mean, std, _ = one_dimensional(0.0, 1.0, 2.0)
    group_classes(mean, std, torch.tensor([1, 0, 1]), "affinity")
    group_classes(mean, std, torch.tensor([1, 0, 1]), "affinity", damping=0.6, seed=4)
    # the seen classes' means 0 and 2: similarity = -(squared distance)
    similarity = [[0.0, -4.0], [-4.0, 0.0]]
    assert calls == [(similarity, 0.9, 0), (similarity, 0.6, 4)], calls


def test_fisher_eps_changes_the_grouping():
    # std 0 everywhere: the Fisher distances are (x_i - x_j)^2 / fisher_eps; with eps 2, min 2:
    # fisher_eps 1 -> {0, 1} (distance 1) and the outlier 3 (distance 4 from 1); fisher_eps 10
    # -> distances 0.1 and 0.4: one group
    mean = torch.tensor([[0.0], [1.0], [3.0]])
    std, seen = torch.zeros(3, 1), torch.ones(3, dtype=torch.long)
    assert group_classes(
        mean, std, seen, "dbscan", eps=2.0, min_samples=2, fisher_eps=1.0
    ).tolist() == [
        0,
        0,
        1,
    ]
    assert group_classes(
        mean, std, seen, "dbscan", eps=2.0, min_samples=2, fisher_eps=10.0
    ).tolist() == [
        0,
        0,
        0,
    ]


@pytest.mark.parametrize("quantile", [0.0, 1.0])
def test_eps_quantile_bounds_are_accepted(quantile):
    mean, std, seen = one_dimensional(0.0, 1.0, 2.0)
    assert group_classes(mean, std, seen, "dbscan", eps_quantile=quantile).shape == (3,)


@pytest.mark.parametrize("quantile", [-0.1, 1.5])
def test_eps_quantile_outside_zero_one_is_refused(quantile):
    mean, std, seen = one_dimensional(0.0, 1.0, 2.0)
    with pytest.raises(
        ValueError, match=f"eps_quantile: expected a value in \\[0, 1\\], got {quantile}"
    ):
        group_classes(mean, std, seen, "dbscan", eps_quantile=quantile)
