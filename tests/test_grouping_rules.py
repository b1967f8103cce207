"""The grouping rules (method §4): the default (HDBSCAN on the Fisher distance) on statistics a
real training run learned, hand-worked cases of each rule, the refusal of misplaced parameters,
and the engine's one-group diagnostics. Then the details of each rule (cases a mutation run of
``scripts/mutation.sh`` found unpinned): the k-distance choice of DBSCAN's ``eps``, the
numbering of groups and outliers, attaching data-less groups to the nearest class, the defaults
and bounds of ``group_classes``, affinity propagation of one or two seen classes and when it does
not converge. Expected groups are worked out by hand from distances between points on a line
(DBSCAN's rule: a core point has ``min_samples`` points, itself included, within ``eps``;
clusters grow from core points).

``data/learned_statistics_synthetic.pt``: FASA's statistics at the last adaptation of the
long-tailed classification example (``--dataset synthetic``, seed 0, adaptive, 30 epochs), whose
100 classes were generated around 10 known super-categories (class ``c`` around centre
``c % 10``). Written by ``python -m benchmarks.grouping_measurement --save-fixture
tests/data/learned_statistics_synthetic.pt``.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from sklearn.metrics import adjusted_rand_score

import fasa_fast.grouping as grouping
from fasa_fast.engine import FASA, FASAGroupingWarning
from fasa_fast.grouping import (
    DEFAULT_GROUPING,
    GROUPING_METHODS,
    _attach_to_groups_with_data,
    _dbscan_groups,
    group_classes,
    group_sizes,
)
from tests.cases import LEARNED_STATISTICS
from tests.oracle import fisher_oracle

FIXTURE = LEARNED_STATISTICS


@pytest.fixture(scope="module")
def learned():
    state = torch.load(FIXTURE, weights_only=True)
    truth = torch.arange(state["mean"].shape[0]) % 10
    return state["mean"], state["std"], state["seen"], truth.numpy()


def test_default_is_hdbscan():
    assert DEFAULT_GROUPING == "hdbscan" and FASA(2, 2, [1, 1]).grouping == "hdbscan"


def test_default_recovers_the_super_categories_of_learned_statistics(learned):
    mean, std, seen, truth = learned
    groups = group_classes(mean, std, seen)
    ari = adjusted_rand_score(truth, groups.numpy())
    largest = group_sizes(groups).max().item() / len(groups)
    assert ari >= 0.8, f"ARI against the 10 super-categories: expected >= 0.8, got {ari:.2f}"
    assert largest <= 0.2, f"largest group: expected <= 20% of the classes, got {largest:.0%}"


def test_paper_dbscan_defaults_chain_the_learned_statistics_into_one_group(learned):
    # why the default changed: the 0.95 quantile of the k-distances reaches across the
    # overlapping super-categories of learned features (docs/reports/grouping_measurement.md)
    mean, std, seen, truth = learned
    groups = group_classes(mean, std, seen, "dbscan")
    largest = group_sizes(groups).max().item() / len(groups)
    assert largest >= 0.9, f"expected the old default to collapse, largest group {largest:.0%}"
    assert adjusted_rand_score(truth, groups.numpy()) < 0.1


def line_statistics(*positions):
    """One feature, std sqrt(1/2): Fisher distances are the squared differences of positions
    (plus the op's eps)."""
    mean = torch.tensor(positions, dtype=torch.float32)[:, None]
    return mean, torch.full_like(mean, math.sqrt(0.5)), torch.ones(len(positions), dtype=torch.long)


def same_partition(a, b) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    return bool(((a[:, None] == a[None, :]) == (b[:, None] == b[None, :])).all())


def test_hdbscan_finds_dense_clusters_and_makes_an_outlier_its_own_group():
    # two tight clusters (spacing 0.1) and one far point: the far point is HDBSCAN noise and
    # becomes a singleton group, numbered after the clusters
    mean, std, seen = line_statistics(0.0, 0.1, 0.2, 10.0, 10.1, 10.2, 50.0)
    groups = group_classes(mean, std, seen, "hdbscan")
    assert same_partition(groups, [0, 0, 0, 1, 1, 1, 2]), groups.tolist()
    assert groups[6] == groups.max(), "the outlier is numbered after the clusters"


def test_hdbscan_never_returns_one_group_holding_every_class():
    # an evenly spaced blob of 7 classes and one far class: allowed a single cluster, HDBSCAN
    # would put the 7 together (7 of 8 classes, one adaptation for nearly all); not allowed, it
    # keeps the blob's two halves apart
    mean, std, seen = line_statistics(0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 5.0)
    groups = group_classes(mean, std, seen, "hdbscan")
    assert group_sizes(groups).max() <= 4, groups.tolist()


def test_hdbscan_default_keeps_pairs_of_classes_together():
    # min_cluster_size 2: two close classes are a group (at 3 all six would be outliers)
    mean, std, seen = line_statistics(0.0, 0.1, 20.0, 20.1, 50.0, 50.1)
    groups = group_classes(mean, std, seen)
    assert same_partition(groups, [0, 0, 1, 1, 2, 2]), groups.tolist()
    assert group_classes(mean, std, seen, min_cluster_size=3).tolist() == [0, 1, 2, 3, 4, 5]


def test_hdbscan_with_fewer_classes_than_a_cluster_makes_each_its_own_group():
    mean, std, seen = line_statistics(0.0, 1.0, 2.0)
    assert group_classes(mean, std, seen, "hdbscan", min_cluster_size=4).tolist() == [0, 1, 2]
    assert group_classes(mean[:1], std[:1], seen[:1], "hdbscan").tolist() == [0]


def test_hdbscan_attaches_a_cluster_without_data_to_the_nearest_class_with_data():
    mean, std, seen = line_statistics(0.0, 0.1, 0.2, 10.0, 10.1, 10.2, 30.0, 30.1, 30.2)
    plain = group_classes(mean, std, seen, "hdbscan")
    assert same_partition(plain, np.arange(9) // 3), plain.tolist()
    # data only in the first and last cluster: the middle one (at 10) is nearer the first
    has_data = torch.tensor([True] + [False] * 5 + [True, False, False])
    joined = group_classes(mean, std, seen, "hdbscan", has_data=has_data)
    assert (joined[:6] == plain[0]).all() and (joined[6:] == plain[6]).all(), joined.tolist()


@pytest.mark.parametrize(
    "method, expected", [("single", [0, -1, 0, 0]), ("per-class", [0, -1, 1, 2])]
)
def test_ablation_groupings(method, expected):
    mean, std, _ = line_statistics(0.0, 1.0, 50.0, 51.0)
    seen = torch.tensor([1, 0, 1, 1])
    assert group_classes(mean, std, seen, method).tolist() == expected


def test_affinity_on_the_fisher_distance_propagates_its_negative(monkeypatch):
    # affinity_distance="fisher": the similarity is minus the Fisher distance of the seen
    # classes (float64 oracle); "euclidean": minus the squared distance of their means
    calls = []
    monkeypatch.setattr(
        grouping,
        "_affinity_groups",
        lambda similarity, damping, seed: (
            calls.append(similarity) or np.zeros(len(similarity), dtype=np.int64)
        ),
    )
    gen = torch.Generator().manual_seed(0)
    mean, std = torch.randn(5, 3, generator=gen), torch.rand(5, 3, generator=gen) + 0.1
    seen = torch.tensor([1, 1, 0, 1, 1])
    kept = torch.tensor([0, 1, 3, 4])
    group_classes(mean, std, seen, "affinity", affinity_distance="fisher")
    group_classes(mean, std, seen, "affinity")
    fisher = fisher_oracle(mean[kept], std[kept], 1e-6)
    euclid = torch.cdist(mean[kept].double(), mean[kept].double()) ** 2
    np.testing.assert_allclose(calls[0], -fisher.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(calls[1], -euclid.numpy(), rtol=1e-5, atol=1e-6)
    with pytest.raises(
        ValueError,
        match=r"affinity_distance: expected one of \('euclidean', 'fisher'\), got 'cosine'",
    ):
        group_classes(mean, std, seen, "affinity", affinity_distance="cosine")


def test_parameters_of_another_method_are_refused_when_fasa_is_built():
    with pytest.raises(
        ValueError,
        match=r"grouping parameters \['eps'\]: not used by grouping 'hdbscan' \(they belong to "
        r"\{'eps': \['dbscan'\]\}\); 'hdbscan' takes \['fisher_eps', 'min_cluster_size'\]",
    ):
        FASA(3, 2, [1, 1, 1], grouping_params=dict(eps=1.0))
    with pytest.raises(ValueError, match=r"grouping parameters \['min_cluster_sise'\]: unknown"):
        FASA(3, 2, [1, 1, 1], grouping_params=dict(min_cluster_sise=3))
    with pytest.raises(ValueError, match=r"grouping: expected one of \('hdbscan', 'dbscan'"):
        FASA(3, 2, [1, 1, 1], grouping="kmeans")
    with pytest.raises(ValueError, match="min_cluster_size: expected >= 2, got 1"):
        group_classes(*line_statistics(0.0, 1.0), min_cluster_size=1)
    assert set(GROUPING_METHODS) == {"hdbscan", "dbscan", "affinity", "single", "per-class"}


def collapsed_engine(grouping="dbscan", classes=10, **kwargs):
    """An engine past its warm-up whose classes DBSCAN (eps 100) puts into one group."""
    params = dict(eps=100.0) if grouping == "dbscan" else {}
    fasa = FASA(classes, 1, [1] * classes, grouping=grouping, grouping_params=params, **kwargs)
    fasa.mean.copy_(torch.arange(float(classes))[:, None]), fasa.std.fill_(1.0)
    fasa.seen.fill_(1)
    return fasa


def adapt_recording(fasa):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        summary = fasa.adapt()
    return summary, [w for w in caught if issubclass(w.category, FASAGroupingWarning)]


def test_one_group_warning_names_the_share_and_what_to_try():
    summary, caught = adapt_recording(collapsed_engine())
    assert summary["num_groups"] == 1 and summary["largest_group_share"] == 1.0
    assert len(caught) == 1
    message = str(caught[0].message)
    assert message.startswith(
        "FASA adaptation 0: one group holds 10 of the 10 grouped classes (100%), so this "
        "adaptation scales (nearly) every sampling probability alike (grouping='dbscan')."
    ), message
    assert "grouping='per-class'" in message and "grouping_params" in message


def test_one_group_warning_threshold_and_exceptions():
    # 9 of 10 in one group is "nearly every class" at the default share 0.9; 8 of 10 is not
    fasa = collapsed_engine()
    fasa.mean[9] = 1e6  # one class far away: an outlier, its own group
    summary, caught = adapt_recording(fasa)
    assert summary["largest_group_share"] == 0.9 and summary["singletons"] == 1 and caught
    fasa.mean[8] = -1e6
    summary, caught = adapt_recording(fasa)
    assert summary["largest_group_share"] == 0.8 and summary["singletons"] == 2 and not caught
    # a configured threshold above the share; the one-group ablation; too few classes to call
    # it a collapse
    fasa = collapsed_engine(one_group_share=0.95)
    fasa.mean[9] = 1e6
    summary, caught = adapt_recording(fasa)
    assert summary["largest_group_share"] == 0.9 and not caught
    assert adapt_recording(collapsed_engine("single"))[1] == []
    assert adapt_recording(collapsed_engine(classes=4))[1] == []
    with pytest.raises(ValueError, match=r"one_group_share: expected a value in \(0, 1\], got 0"):
        FASA(2, 2, [1, 1], one_group_share=0)


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


def test_affinity_grouping_of_a_single_seen_class():
    mean, std = torch.randn(4, 3), torch.ones(4, 3)
    seen = torch.tensor([0, 0, 5, 0])
    groups = group_classes(mean, std, seen, "affinity")
    assert groups.tolist() == [-1, -1, 0, -1], f"expected [-1, -1, 0, -1], got {groups.tolist()}"
    assert groups.dtype == torch.int64


def test_affinity_grouping_keeps_two_distant_classes_apart():
    # two seen classes far apart: each is its own exemplar, two groups (not one shared group)
    mean = torch.tensor([[0.0, 0.0], [100.0, 100.0], [3.0, 3.0]])
    seen = torch.tensor([1, 1, 0])
    groups = group_classes(mean, torch.ones(3, 2), seen, "affinity")
    assert groups[2] == -1 and groups[0] != groups[1] and min(groups[:2]) >= 0, (
        f"expected two different groups and -1 for the unseen class, got {groups.tolist()}"
    )


def test_affinity_grouping_that_does_not_converge_puts_every_class_alone(monkeypatch):
    # scikit-learn labels every sample -1 when affinity propagation does not converge; the
    # grouping then steers each seen class by its own loss (a group per class)
    import sklearn.cluster

    class NotConverging:
        def __init__(self, **kwargs):
            pass

        def fit(self, x):
            self.labels_ = -np.ones(len(x), dtype=np.int64)
            return self

    monkeypatch.setattr(sklearn.cluster, "AffinityPropagation", NotConverging)
    mean = torch.randn(5, 2)  # D = 2 != number of seen classes (4)
    seen = torch.tensor([1, 1, 0, 1, 1])
    groups = group_classes(mean, torch.ones(5, 2), seen, "affinity")
    assert groups.tolist() == [0, 1, -1, 2, 3], f"expected [0, 1, -1, 2, 3], got {groups.tolist()}"
