"""The FASA engine: construction, training-step API, adaptation, grouping, resume; then the
details a mutation run of ``scripts/mutation.sh`` found unpinned: what
``FASA.from_annotation_file`` passes on, the SplitMix64 stream keys, class names in messages,
the epoch-end sync against a stand-in two-rank ``torch.distributed``, the documented defaults
and bounds."""

from __future__ import annotations

import copy
import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fasa_fast import FASA, class_counts_from_annotations, group_classes, initial_probabilities
from fasa_fast.engine import _stream_key
from tests.gloo import leave_process_group
from tests.oracle import (
    EngineReplay,
    cross_entropy_oracle,
    sample_oracle,
    stats_update_oracle,
    virtual_loss_oracle,
)


def small_fasa(**kwargs):
    counts = torch.tensor([100, 50, 10, 5, 1])
    return FASA(5, 4, counts, **kwargs)


# ---- construction ------------------------------------------------------------------------------
def test_initial_probabilities_follow_eq4():
    counts = torch.tensor([1, 2, 4])
    inv = [1.0, 0.5, 0.25]
    expected = [v / sum(inv) for v in inv]
    torch.testing.assert_close(initial_probabilities(counts), torch.tensor(expected))
    torch.testing.assert_close(
        initial_probabilities(counts, scale=2.0),
        torch.tensor([1.0, 2 * 0.5 / 1.75, 2 * 0.25 / 1.75]),
    )
    powered = [v**2 for v in inv]
    torch.testing.assert_close(
        initial_probabilities(counts, power=2.0), torch.tensor([v / sum(powered) for v in powered])
    )


def test_from_lvis_and_coco_annotation_files(tmp_path):
    lvis = {
        "categories": [
            {"id": 7, "name": "b", "frequency": "f", "instance_count": 30, "image_count": 9},
            {"id": 2, "name": "a", "frequency": "r", "instance_count": 3, "image_count": 2},
        ]
    }
    path = tmp_path / "lvis.json"
    path.write_text(json.dumps(lvis))
    fasa = FASA.from_annotation_file(path, feat_dim=6)
    assert fasa.instance_counts.tolist() == [3, 30]  # ordered by category id
    assert class_counts_from_annotations(path).frequency == ("r", "f")
    coco = {
        "categories": [{"id": 1, "name": "x"}, {"id": 3, "name": "y"}],
        "annotations": [{"category_id": 3}, {"category_id": 1}, {"category_id": 3}],
    }
    counts = class_counts_from_annotations(coco)
    assert counts.instance_counts.tolist() == [1, 2] and counts.names == ("x", "y")


@pytest.mark.parametrize(
    ("data", "match"),
    [
        ({"categories": [{"id": 1}]}, "no 'instance_count' and there are no 'annotations'"),
        ({"images": []}, "no 'categories'"),
        ({"categories": [{"id": 1}], "annotations": [{"category_id": 2}]}, "unknown category ids"),
        (
            {"categories": [{"id": 1, "instance_count": 1}, {"id": 1, "instance_count": 2}]},
            "repeat",
        ),
    ],
)
def test_bad_annotation_files(data, match):
    with pytest.raises(ValueError, match=match):
        class_counts_from_annotations(data)


@pytest.mark.parametrize(
    ("args", "exc", "match"),
    [
        # zero counts are allowed (p = 0, a warning; tests/test_engine_streams.py), negative not
        ((3, 4, [1, -1, 2]), ValueError, r"expected counts >= 0, got negative counts for class 1"),
        ((3, 4, [1, 2]), ValueError, r"shape \(3,\)"),
        ((3, 4, [1.0, 2.0, 3.0]), TypeError, "integer counts"),
        ((3, 0, [1, 2, 3]), ValueError, "feat_dim"),
    ],
)
def test_bad_construction(args, exc, match):
    with pytest.raises(exc, match=match):
        FASA(*args)


def test_bad_step_inputs():
    fasa = small_fasa()
    with pytest.raises(ValueError, match=r"features: expected \[N, 4\]"):
        fasa.update(torch.randn(3, 5), torch.zeros(3, dtype=torch.long))
    with pytest.raises(TypeError, match="labels: expected int64 or int32"):
        fasa.update(torch.randn(3, 4), torch.zeros(3))
    with pytest.raises(TypeError, match="labels: expected int64 or int32"):
        fasa.accumulate_adaptation_loss(torch.zeros(3), losses=torch.zeros(3))


# ---- training step -----------------------------------------------------------------------------
def test_update_skips_background_and_ignored():
    fasa = small_fasa()
    features = torch.tensor([[1.0, 2, 3, 4], [3.0, 2, 1, 0], [9.0, 9, 9, 9], [7.0, 7, 7, 7]])
    fasa.update(features, torch.tensor([1, 1, 5, -1]))
    assert fasa.seen.tolist() == [0, 1, 0, 0, 0]
    assert fasa.mean[1].tolist() == [2.0, 2.0, 2.0, 2.0]


def stats_batches(steps, gen):
    """Batches whose spread changes step to step (averaging the std and averaging the variance
    then part ways), with a class seen in single rows (no batch std), background and ignored
    rows."""
    for step in range(steps):
        features = torch.randn(12, 4, generator=gen) * (1.0 + 2.0 * (step % 3)) + step
        labels = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 2, 3, 5, -1])
        yield features, labels[torch.randperm(12, generator=gen)]


@pytest.mark.parametrize("momentum_on_var", [False, True], ids=["average-std", "average-var"])
def test_engine_statistics_match_float64_loop(momentum_on_var):
    fasa = small_fasa(momentum=0.3, momentum_on_var=momentum_on_var)
    mean = torch.zeros(5, 4, dtype=torch.float64)
    std = torch.zeros(5, 4, dtype=torch.float64)
    seen = torch.zeros(5, dtype=torch.long)
    other_std = std.clone()  # the same loop with the other momentum_on_var
    other_mean, other_seen = mean.clone(), seen.clone()
    for step, (features, labels) in enumerate(stats_batches(6, torch.Generator().manual_seed(1))):
        fasa.update(features, labels)
        mean, std, seen = stats_update_oracle(
            features, labels, mean, std, seen, 0.3, momentum_on_var
        )
        other_mean, other_std, other_seen = stats_update_oracle(
            features, labels, other_mean, other_std, other_seen, 0.3, not momentum_on_var
        )
        assert fasa.seen.tolist() == seen.tolist(), (
            f"seen after step {step}: expected {seen.tolist()}, got {fasa.seen.tolist()}"
        )
        torch.testing.assert_close(
            fasa.mean.double(),
            mean,
            atol=1e-5,
            rtol=1e-5,
            msg=lambda m, step=step: f"mean after step {step}: {m}",
        )
        torch.testing.assert_close(
            fasa.std.double(),
            std,
            atol=1e-5,
            rtol=1e-5,
            msg=lambda m, step=step: f"std after step {step}: {m}",
        )
    # The data separate the two settings: an engine that ignored the option fails one of them.
    assert (std - other_std).abs().max() > 0.05
    assert seen[3] == 6 and seen[4] == 0  # single-row class updated each step, class 4 never


def test_virtual_loss_is_a_connected_zero_during_warmup():
    fasa = small_fasa(warmup_epochs=1)
    fc = nn.Linear(4, 6)
    loss = fasa.virtual_loss(fc)
    assert loss.item() == 0.0 and loss.requires_grad
    loss.backward()
    assert fc.weight.grad is not None and (fc.weight.grad == 0).all()
    assert fasa.rng_state[1].item() == 0  # nothing was drawn


VIRTUAL_LOSS_CASES = [
    # (case id, prob, k, capacity, draws, padding rows expected)
    ("all-selected-k2", 1.0, 2, 16, 1, True),  # 10 rows drawn, 6 padding rows
    ("some-selected", 0.5, 1, 8, 6, True),  # a few rows per draw, most of the buffer is padding
    ("overflow", 1.0, 2, 8, 1, False),  # 10 rows requested, 8 fit: a full buffer
]


@pytest.mark.parametrize("case", VIRTUAL_LOSS_CASES, ids=[c[0] for c in VIRTUAL_LOSS_CASES])
def test_virtual_loss_matches_manual_computation(case):
    _, prob, k, capacity, draws, padding = case
    seed = 77
    fasa = small_fasa(warmup_epochs=0, capacity=capacity, k=k, loss_weight=0.5, seed=seed)
    gen = torch.Generator().manual_seed(3)
    fasa.mean.copy_(torch.randn(5, 4, generator=gen) * 2)
    fasa.std.copy_(torch.rand(5, 4, generator=gen) + 0.2)
    fasa.seen.fill_(1)
    fasa.prob.fill_(prob)
    fc = nn.Linear(4, 6)
    padded_draws = 0
    for call in range(draws):
        loss = fasa.virtual_loss(fc)
        # The same draw, independently: Philox oracle, then float64 cross-entropy by hand.
        feats, labels, (filled, requested) = sample_oracle(
            fasa.mean, fasa.std, fasa.seen, fasa.prob, seed, call, k, capacity
        )
        assert filled == min(requested, capacity), (filled, requested)
        padded_draws += 0 < filled < capacity
        expected = virtual_loss_oracle(feats, labels, fc.weight, fc.bias, 0.5)
        assert loss.item() == pytest.approx(expected, rel=1e-5, abs=1e-7), (
            f"virtual loss of draw {call} ({filled} of {capacity} rows filled): expected "
            f"{expected}, got {loss.item()}"
        )
    assert (padded_draws > 0) == padding, f"draws with padding rows: {padded_draws}"


def test_no_virtual_features_gives_connected_zero():
    fasa = small_fasa(warmup_epochs=0)
    fasa.update(torch.randn(10, 4), torch.randint(0, 5, (10,)))
    fasa.prob.zero_()
    fc = nn.Linear(4, 6)
    loss = fasa.virtual_loss(fc)
    assert loss.item() == 0.0 and loss.grad_fn is not None
    loss.backward()
    assert (fc.weight.grad == 0).all()


class CosineClassifier(nn.Module):
    """A stand-in for mmdet's NormedLinear: normalised weights and inputs, a temperature."""

    def __init__(self, dim, classes):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(classes, dim))

    def forward(self, x):
        return 20 * F.normalize(x, dim=1, eps=1e-6) @ F.normalize(self.weight, dim=1).T


def test_custom_classifier_and_loss():
    fasa = small_fasa(warmup_epochs=0, capacity=6)
    fasa.update(torch.randn(30, 4) + 3, torch.randint(0, 5, (30,)))
    fasa.prob.fill_(1.0)
    head = CosineClassifier(4, 6)
    calls = []

    def focal_like(logits, labels):
        calls.append(logits.shape)
        return F.cross_entropy(logits, labels, reduction="none") ** 2

    loss = fasa.virtual_loss(head, focal_like)
    loss.backward()
    assert calls == [torch.Size([6, 6])]
    assert head.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="per-row losses"):
        fasa.virtual_loss(head, lambda logits, labels: logits.sum())


# ---- adaptation ----------------------------------------------------------------------------------
def test_accumulate_from_logits_and_losses():
    fasa = small_fasa()
    logits = torch.randn(6, 6)
    labels = torch.tensor([0, 0, 2, 5, -1, 2])
    fasa.accumulate_adaptation_loss(labels, logits=logits)
    ce = F.cross_entropy(logits[[0, 1, 2, 5]], labels[[0, 1, 2, 5]], reduction="none").double()
    assert fasa.loss_count.tolist() == [2, 0, 2, 0, 0]
    torch.testing.assert_close(fasa.loss_sum[0], ce[0] + ce[1])
    torch.testing.assert_close(fasa.loss_sum[2], ce[2] + ce[3])
    fasa.accumulate_adaptation_loss(torch.tensor([3]), losses=torch.tensor([1.5]))
    assert fasa.loss_sum[3].item() == 1.5
    with pytest.raises(ValueError, match="exactly one"):
        fasa.accumulate_adaptation_loss(labels)


def two_cluster_fasa(**kwargs):
    """Six classes in two well separated clusters {0, 1, 2} and {3, 4, 5}; class 5 never seen."""
    counts = torch.tensor([10, 10, 10, 10, 10, 10])
    fasa = FASA(
        6, 3, counts, grouping="dbscan", grouping_params={"eps": 1.0, "min_samples": 2}, **kwargs
    )
    fasa.mean.copy_(
        torch.tensor([[0, 0, 0], [0.1, 0, 0], [0, 0.1, 0], [50, 50, 50], [50.1, 50, 50], [0, 0, 0]])
    )
    fasa.std.fill_(1.0)
    fasa.seen.copy_(torch.tensor([1, 1, 1, 1, 1, 0]))
    return fasa


def feed_losses(fasa, losses_by_class):
    for c, value in losses_by_class.items():
        fasa.accumulate_adaptation_loss(torch.tensor([c]), losses=torch.tensor([value]))


def test_first_adaptation_only_records_then_groups_move_together():
    fasa = two_cluster_fasa()
    p0 = fasa.prob.clone()
    feed_losses(fasa, {0: 1.0, 1: 2.0, 3: 1.0, 4: 1.0})
    summary = fasa.adapt()
    assert torch.equal(fasa.prob, p0) and summary["num_groups"] == 2
    assert fasa.groups.tolist()[:5] in ([0, 0, 0, 1, 1], [1, 1, 1, 0, 0]) and fasa.groups[5] == -1
    assert fasa.loss_count.sum() == 0  # accumulators reset
    # group {0,1,2}: loss fell (1.5 -> 1.0) -> alpha for all three, class 2 has no data at all;
    # group {3,4}: loss rose (1.0 -> 2.0) -> beta; class 5, never seen, is held.
    feed_losses(fasa, {0: 0.5, 1: 1.5, 3: 2.0, 4: 2.0})
    summary = fasa.adapt()
    expected = p0.clone()
    expected[:3] *= 1.1
    expected[3:5] *= 0.9
    torch.testing.assert_close(fasa.prob, expected)
    assert summary["raised"] == 1 and summary["lowered"] == 1


def test_only_classes_with_data_now_and_before_drive_a_group():
    fasa = two_cluster_fasa()
    p0 = fasa.prob.clone()
    # Adaptation 1 records: class 0 -> 1.0 (class 1 has no data); classes 3 -> 1.0, 4 -> 2.0.
    feed_losses(fasa, {0: 1.0, 3: 1.0, 4: 2.0})
    fasa.adapt()
    # Adaptation 2. Group {0,1,2}: class 1 has data for the first time, with a high loss. Only
    # class 0 had data both times: 0.8 < 1.0 -> alpha. Averaging every class with data now
    # (0.8 + 5.0) / 2 = 2.9 against the recorded (1.0 + 0) / 2 = 0.5 would say beta.
    # Group {3,4}: class 4 has no data now. Only class 3 counts: 1.5 > 1.0 -> beta. Averaging
    # the classes that had data before, (1.5 + 0) / 2 = 0.75 against (1.0 + 2.0) / 2 = 1.5,
    # would say alpha.
    feed_losses(fasa, {0: 0.8, 1: 5.0, 3: 1.5})
    summary = fasa.adapt()
    expected = p0.double()
    expected[:3] *= 1.1
    expected[3:5] *= 0.9
    torch.testing.assert_close(fasa.prob, expected.float(), atol=0, rtol=0)
    assert (summary["raised"], summary["lowered"]) == (1, 1), summary
    assert fasa.prev_class_valid.tolist() == [True, True, False, True, False, False]
    assert fasa.prev_class_loss.tolist() == pytest.approx([0.8, 5.0, 0.0, 1.5, 0.0, 0.0])


def test_probabilities_clamp_to_one():
    fasa = two_cluster_fasa(init_scale=5.0)  # p = 5/6 each
    p0 = fasa.prob[0].item()
    # Losses fall every time: record, then 5/6 * 1.1 = 0.9167, then * 1.1 = 1.008 -> 1, then 1.
    expected = [p0, p0 * 1.1, 1.0, 1.0]
    for loss, p in zip([3.0, 2.0, 1.0, 0.5], expected, strict=True):
        feed_losses(fasa, {0: loss, 3: loss})
        fasa.adapt()
        assert fasa.prob[:5].tolist() == pytest.approx([p] * 5, rel=1e-6), fasa.prob
        assert fasa.prob[5].item() == p0  # never seen: held
    assert p0 == pytest.approx(5 / 6)


def test_outliers_are_singleton_groups():
    fasa = two_cluster_fasa()
    fasa.mean[2] = torch.tensor([-40.0, 20.0, 0.0])  # far from both clusters
    groups = group_classes(fasa.mean, fasa.std, fasa.seen, "dbscan", eps=1.0, min_samples=2)
    assert groups[2] not in (groups[0], groups[3]) and (groups == groups[2]).sum() == 1


def test_default_dbscan_and_affinity_find_clear_clusters():
    gen = torch.Generator().manual_seed(0)
    centers = torch.randn(4, 16, generator=gen) * 20
    mean = centers.repeat_interleave(6, 0) + torch.randn(24, 16, generator=gen) * 0.1
    std = torch.ones(24, 16)
    seen = torch.ones(24, dtype=torch.long)
    truth = torch.arange(4).repeat_interleave(6)
    for method in ("dbscan", "affinity"):
        groups = group_classes(mean, std, seen, method)
        for a in range(24):  # same partition as the truth, up to renaming
            assert ((groups == groups[a]) == (truth == truth[a])).all(), (method, groups)


# ---- resume -----------------------------------------------------------------------------------
def run_epochs(fasa, fc, epochs, gen):
    """Whole epochs of the engine's API: training steps (update, virtual loss), then, after the
    warm-up, an adaptation pass (accumulate) and adapt(). Returns all it produced."""
    trace = []
    for epoch in epochs:
        fasa.start_epoch(epoch)
        for _ in range(3):
            features = torch.randn(16, 4, generator=gen) * 2
            fasa.update(features, torch.randint(0, 6, (16,), generator=gen))
            trace.append(fasa.virtual_loss(fc).detach().clone())
        if fasa.augmenting:
            labels = torch.randint(0, 6, (20,), generator=gen)
            with torch.no_grad():
                logits = fc(torch.randn(20, 4, generator=gen) * 2)
            fasa.accumulate_adaptation_loss(labels, logits=logits)
            trace.append(fasa.adapt())
            trace.append(fasa.prob.clone())
    return trace


def assert_same_trace(expected, got):
    assert len(expected) == len(got)
    for i, (a, b) in enumerate(zip(expected, got, strict=True)):
        if torch.is_tensor(a):
            assert a.dtype == b.dtype and torch.equal(a, b), (
                f"trace item {i}: expected {a}, got {b}"
            )
        else:
            assert a == b, f"trace item {i}: expected {a}, got {b}"


# Buffers deliberately kept out of checkpoints, and why. Every other buffer must round-trip:
# one registered with persistent=False by mistake fails the test below.
NOT_CHECKPOINTED = {
    "_draw_key",  # derived from the seed and the stream (set_stream), not state
    "skipped_rows",  # a diagnostic the hook reads and resets every epoch
}


def snapshot(fasa):
    """Every checkpointed buffer and the extra state."""
    buffers = {n: b.clone() for n, b in fasa.named_buffers() if n not in NOT_CHECKPOINTED}
    return buffers, fasa.get_extra_state().tolist()  # [epoch, num_adaptations]


def test_state_dict_round_trip_continues_bit_identically():
    torch.manual_seed(0)
    fc = nn.Linear(4, 6)
    fasa = small_fasa(warmup_epochs=1, capacity=4, seed=1234, init_scale=3.0)
    fasa.set_stream(run_seed=3, rank=1)
    gen = torch.Generator().manual_seed(5)
    run_epochs(fasa, fc, range(3), gen)  # warm-up, first adaptation (records), a real step
    assert fasa.num_adaptations == 2 and fasa.prev_class_valid.any()
    saved = copy.deepcopy(fasa.state_dict())
    buffers, extra = snapshot(fasa)
    gen_state = gen.get_state()
    uninterrupted = run_epochs(fasa, fc, range(3, 6), gen)
    # The run after the checkpoint adapts from the recorded losses: probabilities move.
    summaries = [item for item in uninterrupted if isinstance(item, dict)]
    assert sum(s["raised"] + s["lowered"] for s in summaries) > 0, summaries

    assert set(saved) == set(buffers) | {"_extra_state"}, (
        f"state_dict: expected every buffer but {sorted(NOT_CHECKPOINTED)} and the extra state, "
        f"missing {set(buffers) - set(saved)}, unexpected {set(saved) - set(buffers) - {'_extra_state'}}"
    )
    # Built from the same configuration, as a trainer resuming does: the Philox key is the seed
    # and stream (configuration), the checkpoint holds the shared counter.
    resumed = small_fasa(warmup_epochs=1, capacity=4, seed=1234)
    resumed.set_stream(run_seed=3, rank=1)
    resumed.load_state_dict(saved)
    got_buffers, got_extra = snapshot(resumed)
    assert got_extra == extra, f"extra state: expected {extra}, got {got_extra}"
    assert set(got_buffers) == set(buffers)
    for name, value in buffers.items():
        assert got_buffers[name].dtype == value.dtype and torch.equal(got_buffers[name], value), (
            f"{name} after loading: expected {value}, got {got_buffers[name]}"
        )
    gen.set_state(gen_state)
    continued = run_epochs(resumed, fc, range(3, 6), gen)
    assert_same_trace(uninterrupted, continued)
    end_buffers, end_extra = snapshot(fasa)
    got_buffers, got_extra = snapshot(resumed)
    assert got_extra == end_extra
    for name, value in end_buffers.items():
        assert torch.equal(got_buffers[name], value), f"{name} at the end differs"


def test_extra_state_is_a_tensor_and_older_dict_checkpoints_still_load():
    # mmengine's Runner broadcasts every state_dict value as a tensor in a distributed run
    fasa = small_fasa()
    fasa.epoch, fasa.num_adaptations = 4, 3
    extra = fasa.state_dict()["_extra_state"]
    assert isinstance(extra, torch.Tensor) and extra.tolist() == [4, 3]
    for saved in (extra, {"epoch": 4, "num_adaptations": 3}):  # the dict: older checkpoints
        state = dict(fasa.state_dict(), _extra_state=saved)
        resumed = small_fasa()
        resumed.load_state_dict(state)
        assert (resumed.epoch, resumed.num_adaptations) == (4, 3), saved


# ---- the whole engine against the float64 replay ---------------------------------------------
@pytest.mark.parametrize("momentum_on_var", [False, True], ids=["average-std", "average-var"])
def test_engine_matches_float64_replay(momentum_on_var):
    options = dict(
        momentum=0.2, momentum_on_var=momentum_on_var, loss_weight=0.3, k=2, capacity=8,
        init_scale=2.0, warmup_epochs=1, seed=21,
    )  # fmt: skip
    counts = [100, 50, 10, 5, 1, 2]
    fasa = FASA(6, 3, counts, **options)
    replay = EngineReplay(6, 3, counts, **options)
    torch.testing.assert_close(
        fasa.prob.double(), torch.tensor(replay.prob, dtype=torch.float64), atol=0, rtol=0
    )
    fc = nn.Linear(3, 7)
    gen = torch.Generator().manual_seed(8)
    centres = torch.randn(6, 3, generator=gen) * 4
    decisions = 0
    for epoch in range(5):
        fasa.start_epoch(epoch)
        replay.epoch = epoch
        for step in range(4):
            labels = torch.randint(-1, 7, (10,), generator=gen)
            features = centres[labels.clamp(0, 5)] + torch.randn(10, 3, generator=gen)
            fasa.update(features, labels)
            replay.update(features, labels)
            loss = fasa.virtual_loss(fc)
            expected = replay.virtual_loss(fc.weight, fc.bias)
            assert loss.item() == pytest.approx(expected, rel=1e-5, abs=1e-7), (
                f"virtual loss, epoch {epoch} step {step}: expected {expected}, got {loss.item()}"
            )
        assert fasa.seen.tolist() == replay.seen.tolist()
        torch.testing.assert_close(fasa.mean.double(), replay.mean, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(fasa.std.double(), replay.std, atol=1e-5, rtol=1e-5)
        if not fasa.augmenting:
            continue
        # Adaptation data for a varying subset of the classes: some have data now but not at
        # the previous adaptation, and the other way round.
        labels = torch.randint(0, 7, (8,), generator=gen)
        losses = torch.rand(8, generator=gen) * 3
        fasa.accumulate_adaptation_loss(labels, losses=losses)
        replay.accumulate(labels, losses)
        summary = fasa.adapt()
        decisions += summary["raised"] + summary["lowered"]
        replay.adapt(fasa.groups.tolist())  # grouping has its own tests
        torch.testing.assert_close(
            fasa.prob.double(),
            torch.tensor(replay.prob, dtype=torch.float64),
            atol=0,
            rtol=0,
            msg=lambda m, epoch=epoch: f"prob after epoch {epoch}: {m}",
        )
        assert fasa.prev_class_valid.tolist() == replay.prev_valid
    assert decisions > 0


# ---- FASA.from_annotation_file: names and options --------------------------------------------
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
