"""The grouping rules (method §4): the default (HDBSCAN on the Fisher distance) on statistics a
real training run learned, hand-worked cases of each rule, the refusal of misplaced parameters,
and the engine's one-group diagnostics.

``data/learned_statistics_synthetic.pt``: FASA's statistics at the last adaptation of the
long-tailed classification example (``--dataset synthetic``, seed 0, adaptive, 30 epochs), whose
100 classes were generated around 10 known super-categories (class ``c`` around centre
``c % 10``). Written by ``python -m benchmarks.grouping_measurement --save-fixture
tests/data/learned_statistics_synthetic.pt``.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import adjusted_rand_score

import fasa_fast.grouping as grouping
from fasa_fast.engine import FASA, FASAGroupingWarning
from fasa_fast.grouping import DEFAULT_GROUPING, GROUPING_METHODS, group_classes, group_sizes
from tests.oracle import fisher_oracle

FIXTURE = Path(__file__).parent / "data" / "learned_statistics_synthetic.pt"


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
