"""The FASA engine: construction, training-step API, adaptation, grouping, resume."""

from __future__ import annotations

import copy
import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fasa_fast import FASA, class_counts_from_annotations, group_classes, initial_probabilities
from tests.oracle import EngineReplay, sample_oracle, stats_update_oracle, virtual_loss_oracle


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
