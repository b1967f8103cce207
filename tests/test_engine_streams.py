"""Engine behaviour for LVIS-scale multi-GPU runs: per-rank/stage/run streams of virtual draws,
classes without training instances, dataless groups following their nearest steered group, and
non-finite feature rows kept out of the statistics."""

from __future__ import annotations

import warnings

import pytest
import torch

from fasa_fast import FASA, initial_probabilities, sample_virtual_features
from fasa_fast.engine import _stream_key
from fasa_fast.grouping import group_classes


def trained(**kwargs) -> FASA:
    torch.manual_seed(0)
    fasa = FASA(6, 4, [50, 20, 10, 5, 2, 1], warmup_epochs=0, capacity=12, **kwargs)
    labels = torch.arange(6).repeat(4)
    fasa.update(torch.randn(24, 4), labels)
    fasa.prob.fill_(1.0)
    return fasa


def test_default_stream_draws_from_the_seed_itself():
    fasa = trained(seed=11)
    state = fasa.rng_state.clone()
    expected = sample_virtual_features(fasa.mean, fasa.std, fasa.seen, fasa.prob, state, 1, 12)
    got = fasa.sample()
    for a, b in zip(got, expected, strict=True):
        assert torch.equal(a, b)
    assert torch.equal(fasa.rng_state, state)  # the shared counter advanced as the op's did


@pytest.mark.parametrize(
    "stream", [dict(rank=1), dict(stage=2), dict(run_seed=3), dict(rank=1, stage=1)]
)
def test_streams_draw_differently_with_the_same_counter(stream):
    base, other = trained(), trained()
    other.set_stream(**stream)
    a, b = base.sample()[0], other.sample()[0]
    assert not torch.equal(a, b)
    assert torch.equal(base.rng_state, other.rng_state)  # counters stay identical
    # the other stream is the op's draw under the hashed key, the same counter
    key = _stream_key(0, (stream.get("run_seed", 0), stream.get("rank", 0), stream.get("stage", 0)))
    state = torch.tensor([key, 0])
    expected = sample_virtual_features(other.mean, other.std, other.seen, other.prob, state, 1, 12)
    assert torch.equal(b, expected[0])


def test_stream_keys_are_distinct_and_signed_64_bit():
    keys = {_stream_key(0, (s, r, g)) for s in range(3) for r in range(8) for g in range(3)}
    assert len(keys) == 72
    assert all(-(2**63) <= k < 2**63 for k in keys)
    assert _stream_key(5, (0, 0, 0)) == 5


def test_state_dict_round_trip_keeps_the_counter_and_not_the_stream():
    a = trained()
    a.set_stream(rank=1)
    a.sample()
    b = trained()
    b.load_state_dict(a.state_dict())
    assert "_draw_key" not in a.state_dict()
    b.set_stream(rank=1)  # each process sets its own stream, as FASAHook does
    assert torch.equal(a.sample()[0], b.sample()[0])
    assert torch.equal(a.rng_state, b.rng_state)


def test_zero_instance_class_gets_probability_zero_and_a_warning_naming_it():
    with pytest.warns(UserWarning, match=r"1 classes have no training instance.*'bus' \(id 7\)"):
        fasa = FASA(3, 2, [4, 0, 2], class_names=["'car' (id 3)", "'bus' (id 7)", "'cat' (id 9)"])
    expected = torch.tensor([0.25, 0.0, 0.5], dtype=torch.float64)  # 1/4, 1/2 over their sum
    expected = expected / expected.sum()
    torch.testing.assert_close(fasa.prob, expected.float())
    torch.testing.assert_close(initial_probabilities(torch.tensor([4, 0, 2])), expected.float())
    fasa.update(torch.randn(6, 2), torch.tensor([0, 1, 2, 0, 1, 2]))
    fasa.start_epoch(1)
    fasa.prob[0] = 1.0
    fasa.prob[2] = 1.0
    for _ in range(20):  # class 1 is seen, but never drawn
        labels = fasa.sample()[1]
        assert not (labels == 1).any()


def test_bad_counts_are_refused():
    with pytest.raises(ValueError, match="expected counts >= 0, got negative counts for class 1"):
        FASA(2, 2, [3, -1])
    with pytest.raises(ValueError, match="every class has 0 training instances"):
        FASA(2, 2, [0, 0])
    with pytest.raises(ValueError, match=r"class_names: expected one name per class \(2\), got 1"):
        FASA(2, 2, [1, 1], class_names=["a"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        FASA(2, 2, [1, 1])  # nothing to warn about


def two_clusters():
    """Classes 0-2 near each other, 3-5 near each other, far apart: two DBSCAN groups."""
    mean = torch.zeros(6, 4)
    mean[3:] = 10.0
    mean += torch.arange(6).float()[:, None] * 0.01
    return mean, torch.ones(6, 4), torch.ones(6, dtype=torch.long)


def test_dataless_groups_join_the_nearest_group_with_data():
    mean, std, seen = two_clusters()
    params = dict(method="dbscan", eps=1.0, min_samples=1)
    plain = group_classes(mean, std, seen, **params)
    assert plain[0] == plain[1] == plain[2] != plain[3] == plain[4] == plain[5]
    has_data = torch.tensor([False, False, False, True, False, False])
    joined = group_classes(mean, std, seen, has_data=has_data, **params)
    # the first cluster has no data: its classes join the group of their nearest class with
    # data, here the only steered group
    assert (joined == joined[3]).all()
    # with data in both clusters nothing changes
    both = torch.tensor([True, False, False, True, False, False])
    assert torch.equal(group_classes(mean, std, seen, has_data=both, **params), plain)
    with pytest.raises(ValueError, match=r"has_data: expected shape \(6,\)"):
        group_classes(mean, std, seen, has_data=torch.ones(5, dtype=torch.bool))


def test_adapt_moves_a_dataless_cluster_with_its_nearest_steered_group():
    mean, std, seen = two_clusters()
    for attach, moved_first in ((True, True), (False, False)):
        fasa = FASA(
            6,
            4,
            [1] * 6,
            grouping="dbscan",
            grouping_params=dict(eps=1.0, min_samples=1),
            attach_dataless=attach,
        )
        fasa.mean.copy_(mean), fasa.std.copy_(std), fasa.seen.copy_(seen)
        fasa.prob.fill_(0.5)
        labels = torch.tensor([3])
        fasa.accumulate_adaptation_loss(labels, losses=torch.tensor([2.0]))
        fasa.adapt()  # records
        fasa.accumulate_adaptation_loss(labels, losses=torch.tensor([1.0]))  # class 3 improved
        summary = fasa.adapt()
        expected = torch.full((6,), 0.5 * 1.1)
        if not moved_first:
            expected[:3] = 0.5
        torch.testing.assert_close(fasa.prob, expected)
        assert summary["moved"] == (6 if attach else 3)


def test_non_finite_rows_never_reach_the_statistics_and_are_counted(device_backend):
    clean = FASA(3, 4, [1, 1, 1]).to(device_backend)
    dirty = FASA(3, 4, [1, 1, 1]).to(device_backend)
    features = torch.randn(8, 4, device=device_backend)
    labels = torch.tensor([0, 1, 2, 0, 1, 2, 3, -1], device=device_backend)  # 3: bg, -1: ignored
    poisoned = features.clone()
    poisoned[1, 2] = float("nan")  # class 1
    poisoned[5, 0] = float("inf")  # class 2
    poisoned[6, 1] = float("nan")  # background: skipped anyway, not counted
    keep = torch.tensor([True, False, True, True, True, False, True, True], device=device_backend)
    clean.update(features[keep], labels[keep])
    dirty.update(poisoned, labels)
    for key in ("mean", "std", "seen"):
        assert torch.equal(getattr(clean, key), getattr(dirty, key)), key
    assert torch.isfinite(dirty.mean).all() and torch.isfinite(dirty.std).all()
    assert dirty.skipped_rows.tolist() == [2, 0]


def test_loading_a_checkpoint_continues_its_stream_whatever_the_constructor_seed():
    a = trained(seed=5)
    a.set_stream(rank=1)
    a.sample()
    b = trained(seed=999)  # e.g. a resumed run whose config names another seed
    b.set_stream(rank=1)
    b.load_state_dict(a.state_dict())
    assert b.seed == 5
    assert torch.equal(a.sample()[0], b.sample()[0])
