"""The FASA engine: construction, training-step API, adaptation, grouping, resume."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fasa_fast import FASA, class_counts_from_annotations, group_classes, initial_probabilities


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
        ((3, 4, [1, 0, 2]), ValueError, r"classes \[1\] have none"),
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


def test_virtual_loss_is_a_connected_zero_during_warmup():
    fasa = small_fasa(warmup_epochs=1)
    fc = nn.Linear(4, 6)
    loss = fasa.virtual_loss(fc)
    assert loss.item() == 0.0 and loss.requires_grad
    loss.backward()
    assert fc.weight.grad is not None and (fc.weight.grad == 0).all()
    assert fasa.rng_state[1].item() == 0  # nothing was drawn


def test_virtual_loss_matches_manual_computation():
    fasa = small_fasa(warmup_epochs=0, capacity=8, k=2, loss_weight=0.5)
    fasa.update(torch.randn(40, 4), torch.randint(0, 5, (40,)))
    fasa.prob.fill_(1.0)
    fc = nn.Linear(4, 6)
    rng_before = fasa.rng_state.clone()
    loss = fasa.virtual_loss(fc)
    fasa.rng_state.copy_(rng_before)
    feats, labels, counts = fasa.sample()  # the same draw again
    assert counts[0].item() == 8
    expected = 0.5 * F.cross_entropy(fc(feats[labels >= 0]), labels[labels >= 0])
    torch.testing.assert_close(loss, expected)


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
    fasa = FASA(6, 3, counts, grouping_params={"eps": 1.0, "min_samples": 2}, **kwargs)
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


def test_probabilities_clamp_to_one():
    fasa = two_cluster_fasa(init_scale=5.0)  # p = 5/6 each
    for loss in [3.0, 2.0, 1.0, 0.5]:
        feed_losses(fasa, {0: loss, 3: loss})
        fasa.adapt()
    assert fasa.prob[:5].max().item() == 1.0 and fasa.prob[5].item() == pytest.approx(5 / 6)


def test_outliers_are_singleton_groups():
    fasa = two_cluster_fasa()
    fasa.mean[2] = torch.tensor([-40.0, 20.0, 0.0])  # far from both clusters
    groups = group_classes(fasa.mean, fasa.std, fasa.seen, eps=1.0, min_samples=2)
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
def run_steps(fasa, fc, steps, gen):
    trace = []
    for _ in range(steps):
        features = torch.randn(16, 4, generator=gen)
        labels = torch.randint(0, 6, (16,), generator=gen)
        fasa.update(features, labels)
        feats, labels_v, counts = fasa.sample()
        trace.append((feats.clone(), labels_v.clone(), fasa.mean.clone()))
    return trace


def test_state_dict_round_trip_continues_bit_identically():
    torch.manual_seed(0)
    fc = nn.Linear(4, 6)
    fasa = small_fasa(warmup_epochs=0, capacity=4, seed=1234)
    fasa.prob.fill_(0.6)
    gen = torch.Generator().manual_seed(5)
    run_steps(fasa, fc, 3, gen)
    fasa.start_epoch(2)
    feed_losses(fasa, {0: 1.0, 2: 3.0})
    fasa.adapt()
    saved = {k: v.clone() if torch.is_tensor(v) else v for k, v in fasa.state_dict().items()}
    gen_state = gen.get_state()
    uninterrupted = run_steps(fasa, fc, 4, gen)

    resumed = small_fasa(warmup_epochs=0, capacity=4, seed=999)  # seed comes from the checkpoint
    resumed.load_state_dict(saved)
    assert resumed.epoch == 2 and resumed.num_adaptations == 1
    gen.set_state(gen_state)
    continued = run_steps(resumed, fc, 4, gen)
    for a, b in zip(uninterrupted, continued, strict=True):
        assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
