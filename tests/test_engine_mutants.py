"""Engine and grouping behaviour that mutation testing (``scripts/mutation.sh``) found
unpinned: what ``FASA.from_annotation_file`` passes on, affinity grouping of one or two seen
classes and when it does not converge, the SplitMix64 stream keys, class names in messages."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from fasa_fast import FASA, group_classes
from fasa_fast.engine import _stream_key
from tests.gloo import leave_process_group
from tests.oracle import (
    cross_entropy_oracle,
    sample_oracle,
    stats_update_oracle,
    virtual_loss_oracle,
)

LVIS = {
    "categories": [
        {"id": 7, "name": "bus", "frequency": "f", "instance_count": 30, "image_count": 9},
        {"id": 2, "name": "car", "frequency": "r", "instance_count": 3, "image_count": 2},
    ]
}


def test_from_annotation_file_names_classes_from_the_file(tmp_path):
    path = tmp_path / "lvis.json"
    path.write_text(json.dumps(LVIS))
    fasa = FASA.from_annotation_file(path, feat_dim=4)
    # classes ordered by category id: class 0 is 'car' (id 2), class 1 is 'bus' (id 7)
    named = fasa.describe_classes([0, 1])
    assert named == "'car' (id 2), 'bus' (id 7)", (
        f"describe_classes: expected the file's names, got {named!r}"
    )
    # an explicit class_names wins over the file's
    custom = FASA.from_annotation_file(path, feat_dim=4, class_names=["x", "y"])
    assert custom.describe_classes([1]) == "y"


def test_from_annotation_file_passes_options_on(tmp_path):
    path = tmp_path / "lvis.json"
    path.write_text(json.dumps(LVIS))
    fasa = FASA.from_annotation_file(path, feat_dim=4, momentum=0.5, k=3, seed=11, alpha=1.5)
    got = (fasa.momentum, fasa.k, fasa.seed, fasa.alpha)
    assert got == (0.5, 3, 11, 1.5), (
        f"(momentum, k, seed, alpha): expected (0.5, 3, 11, 1.5), got {got}"
    )


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


# ---- stream keys: SplitMix64, as documented (FASA.set_stream) ---------------------------------
MASK64 = (1 << 64) - 1


def splitmix64(x: int) -> int:
    """SplitMix64 (Steele, Lea, Flood 2014; Vigna's reference C): one step from state ``x``."""
    z = (x + 0x9E3779B97F4A7C15) & MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    return z ^ (z >> 31)


def stream_key_oracle(seed: int, stream: tuple[int, int, int]) -> int:
    key = seed & MASK64
    for part in stream:
        key = splitmix64(key ^ (part & MASK64))
    return key - (1 << 64) if key >> 63 else key


def test_splitmix64_oracle_matches_the_published_sequence():
    # the first output of SplitMix64 seeded with 0 is 0xE220A8397B1DCDAF
    assert splitmix64(0) == 0xE220A8397B1DCDAF


@pytest.mark.parametrize("seed", [0, 1, 7, -3, 2**62 + 5])
def test_stream_keys_are_splitmix64_of_seed_and_stream(seed):
    for stream in [(0, 0, 1), (0, 1, 0), (1, 0, 0), (3, 7, 2), (2**40, 5, 1)]:
        got, expected = _stream_key(seed, stream), stream_key_oracle(seed, stream)
        assert got == expected, f"_stream_key({seed}, {stream}): expected {expected}, got {got}"


# ---- class names in messages ------------------------------------------------------------------
def test_describe_classes_names_at_most_ten_then_counts_the_rest():
    fasa = FASA(12, 2, [1] * 12, class_names=[f"c{i}" for i in range(12)])
    assert fasa.describe_classes(range(10)) == ", ".join(f"c{i}" for i in range(10))
    got = fasa.describe_classes(range(12))
    expected = ", ".join(f"c{i}" for i in range(10)) + " and 2 more"
    assert got == expected, f"describe_classes(12 classes): expected {expected!r}, got {got!r}"
    assert fasa.describe_classes([3, 5], limit=1) == "c3 and 1 more"
    assert FASA(3, 2, [1] * 3).describe_classes([0, 2]) == "class 0, class 2"


# ---- a one-process group: nothing to synchronise ---------------------------------------------
def test_single_process_group_keeps_every_row(tmp_path):
    # an initialised group of one rank has nobody to gather from: every foreground row reaches
    # the statistics, none is cut at sync_capacity
    import torch.distributed as dist

    fasa = FASA(2, 3, [5, 5], sync_capacity=4)
    features = torch.arange(30, dtype=torch.float32).reshape(10, 3)
    labels = torch.tensor([0, 1] * 5)
    dist.init_process_group(
        "gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1
    )
    try:
        fasa.update(features, labels)
    finally:
        leave_process_group()
    expected = torch.stack([features[0::2].mean(0), features[1::2].mean(0)])
    torch.testing.assert_close(fasa.mean, expected, msg="mean: expected all 10 rows folded in")
    assert fasa.skipped_rows[1] == 0, (
        f"rows cut at sync_capacity: expected 0, got {fasa.skipped_rows[1]}"
    )


# ---- the non-finite row counter -----------------------------------------------------------------
def test_non_finite_rows_of_class_zero_are_counted_across_steps():
    fasa = FASA(3, 2, [1, 1, 1])
    features = torch.tensor([[float("nan"), 0.0], [1.0, 2.0], [3.0, float("inf")]])
    labels = torch.tensor([0, 1, 0])  # two poisoned rows, both of class 0
    fasa.update(features, labels)
    assert fasa.skipped_rows.tolist() == [2, 0], (
        f"after one step: expected [2, 0], got {fasa.skipped_rows.tolist()}"
    )
    fasa.update(features[:2], labels[:2])  # one more poisoned row: the counter accumulates
    assert fasa.skipped_rows.tolist() == [3, 0], (
        f"after two steps: expected [3, 0], got {fasa.skipped_rows.tolist()}"
    )


# ---- adapt() groups with the configured method ------------------------------------------------
def test_adapt_groups_with_the_configured_method():
    # two close classes and a far one: affinity propagation finds two groups, the default
    # DBSCAN (min_samples=3) one; the engine must use the method it was built with
    mean = torch.tensor([[0.0, 0.0], [0.1, 0.0], [50.0, 50.0]])
    std, seen = torch.ones(3, 2), torch.ones(3, dtype=torch.long)
    affinity = group_classes(mean, std, seen, "affinity")
    assert not torch.equal(affinity, group_classes(mean, std, seen, "dbscan")), "no contrast"
    fasa = FASA(3, 2, [1, 1, 1], grouping="affinity")
    fasa.mean.copy_(mean), fasa.std.copy_(std), fasa.seen.copy_(seen)
    fasa.adapt()
    assert torch.equal(fasa.groups, affinity), (
        f"groups: expected {affinity.tolist()}, got {fasa.groups.tolist()}"
    )


def test_adapt_summaries_of_the_first_and_second_adaptation():
    # two far-apart pairs of classes, one DBSCAN group each; classes 0 and 2 have data
    mean = torch.tensor([[0.0, 0.0], [0.1, 0.0], [50.0, 50.0], [50.1, 50.0]])
    fasa = FASA(4, 2, [1, 1, 1, 1], grouping="dbscan", grouping_params=dict(eps=1.0, min_samples=1))
    fasa.mean.copy_(mean), fasa.std.fill_(1.0), fasa.seen.fill_(1)
    labels = torch.tensor([0, 2])
    fasa.accumulate_adaptation_loss(labels, losses=torch.tensor([1.0, 1.0]))
    first = fasa.adapt()
    expected = dict(
        adaptation=0, num_groups=2, largest_group_share=0.5, singletons=0, classes_with_data=2,
        raised=0, lowered=0, moved=0,
    )  # fmt: skip
    assert first == expected, f"first summary: expected {expected}, got {first}"
    fasa.accumulate_adaptation_loss(labels, losses=torch.tensor([0.5, 2.0]))  # 0 better, 2 worse
    second = fasa.adapt()
    expected = dict(
        adaptation=1, num_groups=2, largest_group_share=0.5, singletons=0, classes_with_data=2,
        raised=1, lowered=1, moved=4,
    )  # fmt: skip
    assert second == expected, f"second summary: expected {expected}, got {second}"


# ---- checkpoints ------------------------------------------------------------------------------
def test_checkpoint_restores_the_counters():
    a = FASA(3, 2, [1, 2, 3])
    a.start_epoch(4)
    for _ in range(3):
        a.adapt()
    b = FASA(3, 2, [1, 2, 3])
    b.load_state_dict(a.state_dict())
    got = (b.epoch, b.num_adaptations)
    assert got == (4, 3), f"(epoch, num_adaptations): expected (4, 3), got {got}"


def test_checkpoint_of_another_shape_is_refused_before_anything_changes():
    saved = FASA(3, 4, [7, 8, 9]).state_dict()  # same class count, another feature size
    fasa = FASA(3, 5, [1, 2, 3])
    with pytest.raises(RuntimeError, match="FASA state: size mismatch for mean"):
        fasa.load_state_dict(saved)
    counts = fasa.instance_counts.tolist()
    assert counts == [1, 2, 3], (
        f"instance_counts after a refused load: expected [1, 2, 3], got {counts}"
    )


def test_partial_checkpoint_loads_what_it_has():
    a = FASA(3, 2, [1, 2, 3])
    a.prob.fill_(0.25)
    b = FASA(3, 2, [1, 2, 3])
    partial = {k: v for k, v in a.state_dict().items() if k != "mean"}
    b.load_state_dict(partial, strict=False)
    assert torch.equal(b.prob, torch.full((3,), 0.25))


@pytest.mark.parametrize(
    "second_losses, factor, summary",
    [
        ([1.0, 1.0], 1.0, dict(raised=0, lowered=0, moved=0)),  # equal loss: nobody moves
        ([0.5, 0.5], 1.1, dict(raised=2, lowered=0, moved=4)),  # both groups better: alpha
        ([2.0, 2.0], 0.9, dict(raised=0, lowered=2, moved=4)),  # both groups worse: beta
    ],
    ids=["equal", "both-better", "both-worse"],
)
def test_adapt_counts_every_group_and_holds_on_an_equal_loss(second_losses, factor, summary):
    mean = torch.tensor([[0.0, 0.0], [0.1, 0.0], [50.0, 50.0], [50.1, 50.0]])
    fasa = FASA(4, 2, [1, 1, 1, 1], grouping="dbscan", grouping_params=dict(eps=1.0, min_samples=1))
    fasa.mean.copy_(mean), fasa.std.fill_(1.0), fasa.seen.fill_(1)
    fasa.prob.fill_(0.5)
    labels = torch.tensor([0, 2])
    fasa.accumulate_adaptation_loss(labels, losses=torch.tensor([1.0, 1.0]))
    fasa.adapt()
    fasa.accumulate_adaptation_loss(labels, losses=torch.tensor(second_losses))
    got = fasa.adapt()
    got = {k: got[k] for k in summary}
    assert got == summary, f"summary: expected {summary}, got {got}"
    torch.testing.assert_close(fasa.prob, torch.full((4,), 0.5 * factor))


@pytest.mark.parametrize(
    "shape",
    [(4, 2), (3, 3), (3, 4), (4, 3, 1)],
    ids=["too-few-classes", "rows-not-labels", "rows-not-labels-square", "three-dims"],
)
def test_adaptation_logits_of_a_wrong_shape_are_refused(shape):
    fasa = FASA(3, 2, [1, 1, 1])
    with pytest.raises(ValueError, match=r"logits: expected \[4, >= 3\]"):
        fasa.accumulate_adaptation_loss(torch.tensor([0, 1, 2, 0]), logits=torch.zeros(shape))
    assert fasa.loss_count.sum() == 0
    # a right shape (more rows than classes, mmdet's background column) is accepted
    fasa.accumulate_adaptation_loss(torch.tensor([0, 1, 2, 0]), logits=torch.zeros(4, 4))
    assert fasa.loss_count.tolist() == [2.0, 1.0, 1.0]


def test_adaptation_logits_without_a_background_column_and_labels_beyond_them():
    # logits [M, C] (no background column) are accepted and the last class's loss is its own;
    # labels past the logits' columns (background, ignore values such as 255) are skipped
    fasa = FASA(3, 2, [1, 1, 1])
    logits = torch.tensor([[0.5, -1.0, 2.0], [1.0, 0.0, -0.5], [0.0, 0.0, 0.0], [3.0, 1.0, 0.0]])
    labels = torch.tensor([2, 0, 255, -1])
    fasa.accumulate_adaptation_loss(labels, logits=logits)
    expected = [
        cross_entropy_oracle(logits[1].double().tolist(), 0),
        0.0,
        cross_entropy_oracle(logits[0].double().tolist(), 2),
    ]
    assert fasa.loss_count.tolist() == [1.0, 0.0, 1.0]
    torch.testing.assert_close(
        fasa.loss_sum, torch.tensor(expected, dtype=torch.float64), rtol=1e-6, atol=1e-6
    )


def test_virtual_loss_of_a_single_virtual_feature():
    # one seen class drawn with certainty, k = 1: the loss is loss_weight times that one row's
    # cross-entropy (a mean over one row)
    fasa = FASA(3, 2, [1, 1, 1], warmup_epochs=0, capacity=4, loss_weight=0.5, seed=5)
    fasa.mean.copy_(torch.tensor([[1.0, -1.0], [0.0, 0.0], [0.0, 0.0]]))
    fasa.std.fill_(0.5)
    fasa.seen.copy_(torch.tensor([1, 0, 0]))
    fasa.prob.fill_(1.0)
    fc = torch.nn.Linear(2, 3)
    loss = fasa.virtual_loss(fc)
    feats, labels, (filled, _) = sample_oracle(
        fasa.mean, fasa.std, fasa.seen, fasa.prob, 5, 0, 1, 4
    )
    assert filled == 1
    expected = virtual_loss_oracle(feats, labels, fc.weight, fc.bias, 0.5)
    assert loss.item() == pytest.approx(expected, rel=1e-5), (
        f"virtual loss: expected {expected}, got {loss.item()}"
    )


# ---- the statistics sync, as rank 0 of two, in this process ----------------------------------
# tests/test_distributed_engine.py runs the sync in two gloo processes; mutation testing maps
# tests to code only inside its own process, so the same contract is also pinned here with a
# stand-in for torch.distributed: rank 1's block is given, the collectives are exact.
class TwoRankWorld:
    """torch.distributed seen from rank 0 of two: ``all_gather`` returns this rank's tensor
    and then rank 1's (``other``, in call order), ``all_reduce`` adds rank 1's share."""

    def __init__(self, monkeypatch, other):
        self.other, self.sent = list(other), []
        dist = torch.distributed
        monkeypatch.setattr(dist, "is_available", lambda: True)
        monkeypatch.setattr(dist, "is_initialized", lambda: True)
        monkeypatch.setattr(dist, "get_world_size", lambda group=None: 2)
        monkeypatch.setattr(dist, "all_gather", self.all_gather)
        monkeypatch.setattr(dist, "all_reduce", self.all_reduce)

    def all_gather(self, out, tensor, group=None, async_op=False):
        assert len(out) == 2, f"all_gather: expected 2 output tensors, got {len(out)}"
        self.sent.append(tensor.clone())
        out[0].copy_(tensor)
        out[1].copy_(self.other.pop(0))

    def all_reduce(self, tensor, op=None, group=None, async_op=False):
        self.sent.append(tensor.clone())
        tensor.add_(self.other.pop(0))


def rank1_block(rows, dim, labels, seed):
    """A block as rank 1 sends it: its foreground rows first, ``-1`` padding after."""
    features = torch.zeros(rows, dim)
    features[: len(labels)] = torch.randn(
        len(labels), dim, generator=torch.Generator().manual_seed(seed)
    )
    block_labels = torch.full((rows,), -1, dtype=torch.long)
    block_labels[: len(labels)] = torch.tensor(labels)
    return features, block_labels


@pytest.mark.parametrize("momentum_on_var", [False, True])
def test_sync_folds_both_ranks_foreground_rows_into_the_statistics(monkeypatch, momentum_on_var):
    C, D, rows = 3, 4, 6
    fasa = FASA(C, D, [4, 4, 4], sync_capacity=rows, momentum=0.3, momentum_on_var=momentum_on_var)
    generator = torch.Generator().manual_seed(1)
    # a first, unsynchronised step gives every class a running state (the momentum branch)
    fasa.sync_statistics = False
    fasa.update(torch.randn(9, D, generator=generator), torch.tensor([0, 1, 2] * 3))
    fasa.sync_statistics = True
    mean0, std0, seen0 = fasa.mean.clone(), fasa.std.clone(), fasa.seen.clone()
    # rank 0: background (C), ignored (-1), a NaN row and foreground rows of classes 0 and 2
    features = torch.randn(7, D, generator=generator)
    features[4, 1] = float("nan")
    labels = torch.tensor([0, C, 2, -1, 0, 2, 0])
    other_features, other_labels = rank1_block(rows, D, [1, 0, 1, 2], seed=2)
    world = TwoRankWorld(monkeypatch, [other_features, other_labels])
    fasa.update(features, labels)

    # what rank 0 sent: its finite foreground rows in their order (0, 2, 5, 6), then padding
    # labelled -1 (whatever features the padding rows carry, the kernels skip them)
    sent_features, sent_labels = world.sent
    keep = [0, 2, 5, 6]
    assert sent_labels.tolist() == [0, 2, 2, 0, -1, -1], (
        f"rank 0's labels block: expected [0, 2, 2, 0, -1, -1], got {sent_labels.tolist()}"
    )
    torch.testing.assert_close(sent_features[:4], features[keep], rtol=0, atol=0)
    # the statistics: one step over both ranks' rows together (float64 oracle)
    both = torch.cat([features[keep], other_features[:4]])
    both_labels = torch.cat([labels[keep], other_labels[:4]])
    mean, std, seen = stats_update_oracle(
        both, both_labels, mean0, std0, seen0, 0.3, momentum_on_var
    )
    torch.testing.assert_close(fasa.mean.double(), mean, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(fasa.std.double(), std, rtol=1e-5, atol=1e-6)
    assert fasa.seen.tolist() == seen.tolist() == [2, 2, 2]
    assert fasa.skipped_rows.tolist() == [1, 0], (
        f"skipped rows [non-finite, beyond sync_capacity]: expected [1, 0], got "
        f"{fasa.skipped_rows.tolist()}"
    )


def test_sync_keeps_the_first_sync_capacity_foreground_rows_and_counts_the_rest(monkeypatch):
    C, D, rows = 2, 3, 3
    fasa = FASA(C, D, [4, 4], sync_capacity=rows)
    features = torch.arange(21, dtype=torch.float32).reshape(7, D)
    labels = torch.tensor([1, C, 0, 1, 0, -1, 1])  # five foreground rows: 0, 2, 3, 4, 6
    other_features, other_labels = rank1_block(rows, D, [0], seed=3)
    world = TwoRankWorld(monkeypatch, [other_features, other_labels])
    fasa.update(features, labels)
    assert world.sent[1].tolist() == [1, 0, 1], (
        f"rank 0's labels block: expected its first 3 foreground rows [1, 0, 1], got "
        f"{world.sent[1].tolist()}"
    )
    torch.testing.assert_close(world.sent[0], features[[0, 2, 3]], rtol=0, atol=0)
    assert fasa.skipped_rows.tolist() == [0, 2], (
        f"skipped rows: expected [0, 2] (two rows beyond sync_capacity), got "
        f"{fasa.skipped_rows.tolist()}"
    )
    mean, std, seen = stats_update_oracle(
        torch.cat([features[[0, 2, 3]], other_features[:1]]),
        torch.tensor([1, 0, 1, 0]),
        torch.zeros(C, D),
        torch.zeros(C, D),
        torch.zeros(C, dtype=torch.long),
        0.1,
        False,
    )
    torch.testing.assert_close(fasa.mean.double(), mean, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(fasa.std.double(), std, rtol=1e-6, atol=1e-6)
    assert fasa.seen.tolist() == seen.tolist()


def test_per_rank_statistics_when_the_sync_is_off(monkeypatch):
    fasa = FASA(2, 2, [4, 4], sync_statistics=False)
    world = TwoRankWorld(monkeypatch, [])
    features = torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 8.0]])
    fasa.update(features, torch.tensor([0, 1, 0]))
    assert world.sent == [], "sync_statistics=False: expected no collective"
    torch.testing.assert_close(fasa.mean, torch.tensor([[3.0, 5.0], [3.0, 4.0]]))


def test_adaptation_losses_are_summed_over_ranks(monkeypatch):
    fasa = FASA(3, 2, [4, 4, 4])
    fasa.loss_sum.copy_(torch.tensor([1.0, 0.0, 2.5], dtype=torch.float64))
    fasa.loss_count.copy_(torch.tensor([2.0, 0.0, 1.0], dtype=torch.float64))
    other_sum = torch.tensor([0.5, 4.0, 0.0], dtype=torch.float64)
    other_count = torch.tensor([1.0, 3.0, 0.0], dtype=torch.float64)
    TwoRankWorld(monkeypatch, [other_sum, other_count])
    fasa.reduce_adaptation_losses()
    assert fasa.loss_sum.tolist() == [1.5, 4.0, 2.5], f"loss_sum: got {fasa.loss_sum.tolist()}"
    assert fasa.loss_count.tolist() == [3.0, 3.0, 1.0], (
        f"loss_count: got {fasa.loss_count.tolist()}"
    )


# ---- construction: documented defaults, each bound on its own ---------------------------------
def test_documented_defaults():
    fasa = FASA(3, 4, [1, 2, 3])
    got = {
        name: getattr(fasa, name)
        for name in (
            "momentum", "momentum_on_var", "loss_weight", "k", "capacity", "alpha", "beta",
            "warmup_epochs", "grouping", "attach_dataless", "sync_statistics", "sync_capacity",
            "seed", "stream",
        )
    }  # fmt: skip
    expected = dict(
        momentum=0.1, momentum_on_var=False, loss_weight=0.1, k=1, capacity=64, alpha=1.1,
        beta=0.9, warmup_epochs=1, grouping="hdbscan", attach_dataless=True,
        sync_statistics=True, sync_capacity=512, seed=0, stream=(0, 0, 0),
    )  # fmt: skip
    assert got == expected, f"defaults: expected {expected}, got {got}"
    assert fasa.groups.tolist() == [-1, -1, -1], "no class is in a group before adapt()"
    assert fasa.skipped_rows.dtype == torch.int64 and fasa.skipped_rows.tolist() == [0, 0]


def test_probabilities_follow_init_scale_and_power():
    # Eq. 4 by hand: p_c = scale * (1 / N_c)^power / sum_j (1 / N_j)^power
    counts = [1, 4, 16]
    fasa = FASA(3, 2, counts, init_scale=2.0, power=0.5)
    inverse = [n**-0.5 for n in counts]  # 1, 1/2, 1/4
    expected = [min(1.0, 2.0 * v / sum(inverse)) for v in inverse]
    assert fasa.prob.tolist() == pytest.approx(expected, rel=1e-6)


def test_a_loaded_engine_draws_from_the_seed_own_stream():
    # (0, 0, 0) is the seed's own stream: an engine that loads a state continues its draws
    source = FASA(3, 2, [3, 3, 3], seed=9)
    source.update(torch.randn(6, 2), torch.tensor([0, 1, 2] * 2))
    target = FASA(3, 2, [3, 3, 3], seed=9)
    target.load_state_dict(source.state_dict())
    a, b = source.sample(), target.sample()
    for x, y in zip(a, b, strict=True):
        torch.testing.assert_close(x, y, rtol=0, atol=0)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(momentum=0.0), dict(momentum=1.0), dict(capacity=0), dict(k=1), dict(warmup_epochs=0),
        dict(alpha=0.5, beta=1.5), dict(sync_capacity=1),
    ],
)  # fmt: skip
def test_constructor_accepts_the_bounds(kwargs):
    fasa = FASA(1, 1, [2], **kwargs)
    for name, value in kwargs.items():
        assert getattr(fasa, name) == value


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(momentum=1.5), r"momentum: expected a value in \[0, 1\], got 1.5"),
        (dict(momentum=-0.1), r"momentum: expected a value in \[0, 1\], got -0.1"),
        (dict(k=0), "k >= 1, capacity >= 0 and warmup_epochs >= 0 expected, got 0, 64, 1"),
        (dict(capacity=-1), "k >= 1, capacity >= 0 and warmup_epochs >= 0 expected, got 1, -1, 1"),
        (
            dict(warmup_epochs=-1),
            "k >= 1, capacity >= 0 and warmup_epochs >= 0 expected, got 1, 64, -1",
        ),
        (dict(alpha=0.0), "alpha/beta: expected positive multipliers, got 0.0, 0.9"),
        (dict(beta=0.0), "alpha/beta: expected positive multipliers, got 1.1, 0.0"),
        (dict(sync_capacity=0), "sync_capacity: expected >= 1, got 0"),
    ],
)
def test_constructor_refuses_each_bad_value(kwargs, match):
    with pytest.raises(ValueError, match=match):
        FASA(2, 2, [2, 2], **kwargs)


def test_num_classes_bound():
    FASA(1, 2, [3])  # one class is enough
    with pytest.raises(ValueError, match="num_classes: expected >= 1, got 0"):
        FASA(0, 2, torch.zeros(0, dtype=torch.long))


def test_previous_losses_are_kept_in_float64():
    # losses equal to float64 precision but not to float32's: the same loss twice holds the
    # probabilities (a float32 copy of the previous loss would read as a rise and lower them)
    fasa = FASA(2, 2, [5, 5], grouping="dbscan", grouping_params=dict(eps=1.0, min_samples=1))
    fasa.update(torch.tensor([[0.0, 0.0], [0.1, 0.0]]), torch.tensor([0, 1]))
    before = fasa.prob.clone()
    for _ in range(2):
        fasa.loss_sum.copy_(torch.tensor([1.0 + 1e-12, 1.0 + 1e-12], dtype=torch.float64))
        fasa.loss_count.fill_(1.0)
        summary = fasa.adapt()
    assert (summary["raised"], summary["lowered"]) == (0, 0), summary
    torch.testing.assert_close(fasa.prob, before, rtol=0, atol=0)


def test_sync_keeps_the_order_of_many_foreground_rows(monkeypatch):
    # a long batch (where an unstable sort would shuffle rows of equal keys): the block holds
    # the foreground rows in their batch order
    C, D, N = 4, 2, 3000
    fasa = FASA(C, D, [5] * C, sync_capacity=N)
    labels = torch.arange(N) % (C + 2) - 1  # -1, 0, 1, 2, 3, 4 (background), repeating
    features = torch.arange(N, dtype=torch.float32)[:, None].repeat(1, D)
    world = TwoRankWorld(monkeypatch, rank1_block(N, D, [], seed=0))
    fasa.update(features, labels)
    foreground = ((labels >= 0) & (labels < C)).nonzero().flatten()
    sent, sent_labels = world.sent
    n = foreground.numel()
    assert torch.equal(sent[:n, 0], features[foreground, 0]), "foreground rows out of order"
    assert torch.equal(sent_labels[:n], labels[foreground])
    assert (sent_labels[n:] == -1).all()


def test_a_short_batch_is_padded_with_ignored_rows_and_overflow_accumulates(monkeypatch):
    # 2 rows, sync_capacity 4: the block's last two rows are padding labelled -1
    fasa = FASA(2, 2, [5, 5], sync_capacity=4)
    other = rank1_block(4, 2, [], seed=0)
    world = TwoRankWorld(monkeypatch, [*other, *other])
    fasa.update(torch.ones(2, 2), torch.tensor([1, 0]))
    assert world.sent[1].tolist() == [1, 0, -1, -1], f"labels sent: {world.sent[1].tolist()}"
    # two steps each with 6 foreground rows over a capacity of 4: 2 + 2 rows kept out
    fasa = FASA(2, 2, [5, 5], sync_capacity=4)
    world = TwoRankWorld(monkeypatch, [*other, *other])
    for _ in range(2):
        fasa.update(torch.ones(6, 2), torch.tensor([0, 1] * 3))
    assert fasa.skipped_rows.tolist() == [0, 4], f"skipped rows: {fasa.skipped_rows.tolist()}"


def test_adaptation_loss_reduction_is_a_no_op_in_one_process():
    fasa = FASA(2, 2, [5, 5])
    fasa.loss_sum.copy_(torch.tensor([1.5, 2.0], dtype=torch.float64))
    fasa.reduce_adaptation_losses()  # no process group: nothing to reduce, and no error
    assert fasa.loss_sum.tolist() == [1.5, 2.0]
