"""FASA box heads inside mmdet's RoI heads: losses, statistics, inference, stateful losses.

Expected values come from outside the code under test: the virtual-feature draw from the
float64 Philox oracle (``tests/oracle.py``), the losses computed by hand in float64, the
statistics from the float64 update oracle, EQLv2's accumulators from a fresh EQLv2 loss.
"""

from __future__ import annotations

import copy
import math

import pytest
import torch

from tests.mmdet.helpers import (
    NUM_CLASSES,
    batch,
    build,
    cascade_config,
    mask_rcnn_config,
    toy_dataset,
)
from tests.oracle import sample_oracle, stats_update_oracle


@pytest.fixture(scope="module")
def ann_file(tmp_path_factory):
    return toy_dataset(tmp_path_factory.mktemp("toy"))["train"]


def hand_logits(fc_cls, features: torch.Tensor) -> torch.Tensor:
    """``fc_cls`` (``nn.Linear`` or mmdet's ``NormedLinear``) applied in float64 by hand."""
    weight = fc_cls.weight.detach().double()
    x = features.double()
    if hasattr(fc_cls, "tempearture"):  # NormedLinear: cosine logits scaled by a temperature
        weight = weight / (weight.norm(dim=1, keepdim=True).pow(fc_cls.power) + fc_cls.eps)
        x = fc_cls.tempearture * x / (x.norm(dim=1, keepdim=True).pow(fc_cls.power) + fc_cls.eps)
    return x @ weight.T + fc_cls.bias.detach().double()


def hand_per_row_loss(logits: torch.Tensor, labels: torch.Tensor, kind: str, over: int) -> list:
    """Per-row loss on the first ``over`` logits in Python floats: softmax cross-entropy, or the
    sum of binary cross-entropies against the one-hot class."""
    out = []
    for row, label in zip(logits.double().tolist(), labels.tolist(), strict=True):
        z = row[:over]
        if kind == "softmax":
            top = max(z)
            out.append(top + math.log(sum(math.exp(v - top) for v in z)) - z[label])
        else:  # BCE with logits: max(z, 0) - z * t + log(1 + exp(-|z|))
            out.append(
                sum(
                    max(v, 0.0) - v * (j == label) + math.log1p(math.exp(-abs(v)))
                    for j, v in enumerate(z)
                )
            )
    return out


def expected_virtual_loss(head, rng_before: torch.Tensor, kind: str, over: int) -> float:
    """The step's ``loss_cls_fasa`` from the head's statistics after the step's update: the
    draw replayed by the Philox oracle from the random state before the step, then
    ``loss_weight`` times the mean hand-computed loss of the drawn rows."""
    fasa = head.fasa
    seed, call = (int(v) for v in rng_before.tolist())
    features, labels, (filled, requested) = sample_oracle(
        fasa.mean, fasa.std, fasa.seen, fasa.prob, seed, call, fasa.k, fasa.capacity
    )
    assert filled == requested > 0, (
        f"virtual rows: expected some, all fitting, got {filled}/{requested}"
    )
    rows = labels >= 0
    losses = hand_per_row_loss(hand_logits(head.fc_cls, features[rows]), labels[rows], kind, over)
    return fasa.loss_weight * sum(losses) / len(losses)


def spy_loss_calls(head) -> list:
    """Records (cls_score, labels) of every call of the head's ``loss_cls``."""
    calls = []
    original = head.loss_cls.forward

    def spy(cls_score, labels, *args, **kwargs):
        calls.append((cls_score.detach().clone(), labels.clone()))
        return original(cls_score, labels, *args, **kwargs)

    head.loss_cls.forward = spy
    return calls


def spy_cls_features(head) -> list:
    """Records the input of every ``fc_cls`` call (the real RoIs first, then virtual rows)."""
    inputs = []
    head.fc_cls.register_forward_pre_hook(lambda module, args: inputs.append(args[0].detach()))
    return inputs


def check_virtual_loss(losses, head, rng_before, kind, over) -> None:
    expected = expected_virtual_loss(head, rng_before, kind, over)
    got = losses["loss_cls_fasa"].item()
    assert got == pytest.approx(expected, rel=1e-5, abs=1e-7), (
        f"loss_cls_fasa: expected {expected}, got {got}"
    )
    draws = int(head.fasa.rng_state[1] - rng_before[1])
    assert draws == 1, f"virtual-feature draws per step: expected 1, got {draws}"


def test_training_step_adds_loss_cls_fasa_and_updates_statistics(tmp_path, ann_file):
    model = build(mask_rcnn_config(tmp_path, ann_file))
    head = model.roi_head.bbox_head
    head.fasa.prob.fill_(1.0)
    state0 = {k: getattr(head.fasa, k).clone() for k in ("mean", "std", "seen", "rng_state")}
    calls, inputs = spy_loss_calls(head), spy_cls_features(head)
    losses = model(**batch(model), mode="loss")

    # statistics: the real RoIs' classification features folded in, background skipped
    (_, labels), features = calls[0], inputs[0]
    assert features.shape == (labels.shape[0], head.fc_cls.in_features)
    mean, std, seen = stats_update_oracle(
        features, labels, state0["mean"], state0["std"], state0["seen"], 0.1, False
    )
    assert torch.equal(head.fasa.seen, seen), f"seen: expected {seen}, got {head.fasa.seen}"
    assert (seen > 0).any() and (labels == NUM_CLASSES).any()  # positives and background
    torch.testing.assert_close(head.fasa.mean.double(), mean, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(head.fasa.std.double(), std, rtol=1e-5, atol=1e-6)

    # softmax head: cross-entropy over the C class logits and the background logit
    check_virtual_loss(losses, head, state0["rng_state"], "softmax", NUM_CLASSES + 1)
    total, _ = model.parse_losses(losses)
    total.backward()
    assert head.fc_cls.weight.grad is not None


def bbox_head(tmp_path, ann_file, **kwargs):
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules

    register_all_modules()
    return MODELS.build(mask_rcnn_config(tmp_path, ann_file, **kwargs).model.roi_head.bbox_head)


SEESAW = dict(type="SeesawLoss", p=0.8, q=2.0, num_classes=NUM_CLASSES, loss_weight=1.0)
EQLV2 = dict(type="EQLV2Loss", num_classes=NUM_CLASSES)


@pytest.mark.parametrize(
    "case, kwargs, kind, over",
    [
        # plain softmax head [C class logits, background]: CE over all C + 1
        ("softmax", {}, "softmax", NUM_CLASSES + 1),
        # Seesaw [C class logits, 2 objectness logits]: CE over the C class logits
        ("seesaw", dict(loss_cls=SEESAW, normed=True), "softmax", NUM_CLASSES),
        # sigmoid (EQLv2) [C class logits, background]: sum of BCE over the C class logits
        ("sigmoid", dict(loss_cls=EQLV2, virtual_loss="sigmoid"), "sigmoid", NUM_CLASSES),
    ],
)
def test_per_row_loss_matches_a_hand_computation(tmp_path, ann_file, case, kwargs, kind, over):
    head = bbox_head(tmp_path, ann_file, **kwargs)
    channels = head.fc_cls.out_features
    assert channels == NUM_CLASSES + (2 if case == "seesaw" else 1)
    generator = torch.Generator().manual_seed(1)
    cls_score = 4.0 * torch.randn(6, channels, generator=generator)
    labels = torch.tensor([0, 5, NUM_CLASSES - 1, 3, 0, 11])
    got = head.fasa_per_row_loss(cls_score, labels)
    expected = hand_per_row_loss(cls_score, labels, kind, over)
    assert got.tolist() == pytest.approx(expected, rel=1e-5), (
        f"{case} per-row loss: expected {expected}, got {got.tolist()}"
    )


def test_seesaw_statistics_see_real_samples_only(tmp_path, ann_file):
    model = build(mask_rcnn_config(tmp_path, ann_file, loss_cls=SEESAW, normed=True))
    head = model.roi_head.bbox_head
    head.fasa.prob.fill_(1.0)
    rng_before = head.fasa.rng_state.clone()
    calls = spy_loss_calls(head)
    losses = model(**batch(model), mode="loss")
    check_virtual_loss(losses, head, rng_before, "softmax", NUM_CLASSES)
    assert len(calls) == 1  # loss_cls saw the real RoIs once, never the virtual features
    (_, labels) = calls[0]
    counts = torch.bincount(labels, minlength=NUM_CLASSES + 1).float()
    assert torch.equal(head.loss_cls.cum_samples, counts), (
        f"cum_samples: expected the real RoIs' label counts {counts}, got {head.loss_cls.cum_samples}"
    )


def test_eqlv2_statistics_see_real_samples_only(tmp_path, ann_file):
    from mmdet.models.losses import EQLV2Loss

    model = build(mask_rcnn_config(tmp_path, ann_file, loss_cls=EQLV2, virtual_loss="sigmoid"))
    head = model.roi_head.bbox_head
    head.fasa.prob.fill_(1.0)
    rng_before = head.fasa.rng_state.clone()
    calls = spy_loss_calls(head)
    losses = model(**batch(model), mode="loss")
    check_virtual_loss(losses, head, rng_before, "sigmoid", NUM_CLASSES)
    assert len(calls) == 1
    # EQLv2 updates its accumulators in its forward: they must be those of the real RoIs alone,
    # as a fresh EQLv2 loss given only the real RoIs' scores and labels computes them
    fresh = EQLV2Loss(num_classes=NUM_CLASSES)
    fresh(*calls[0])
    model.parse_losses(losses)[0].backward()
    for name in ("pos_grad", "neg_grad", "pos_neg"):
        got, expected = getattr(head.loss_cls, name), getattr(fresh, name)
        assert torch.equal(got, expected), f"EQLv2 {name}: expected {expected}, got {got}"


def test_shared_4conv_1fc_head_trains(tmp_path, ann_file):
    cfg = mask_rcnn_config(tmp_path, ann_file)
    cfg.model.roi_head.bbox_head.update(type="FASAShared4Conv1FCBBoxHead", conv_out_channels=32)
    model = build(cfg)
    head = model.roi_head.bbox_head
    assert len(head.shared_convs) == 4 and len(head.shared_fcs) == 1
    assert head.fasa.feat_dim == head.fc_cls.in_features == 128
    head.fasa.prob.fill_(1.0)
    rng_before = head.fasa.rng_state.clone()
    losses = model(**batch(model), mode="loss")
    assert head.fasa.seen.sum() > 0
    check_virtual_loss(losses, head, rng_before, "softmax", NUM_CLASSES + 1)
    model.parse_losses(losses)[0].backward()
    assert head.fc_cls.weight.grad.abs().sum() > 0
    assert head.shared_convs[0].conv.weight.grad.abs().sum() > 0


def test_inference_equals_the_plain_head_after_training(tmp_path, ann_file):
    cfg = mask_rcnn_config(tmp_path, ann_file)
    plain_cfg = mask_rcnn_config(tmp_path, fasa=False)
    for c in (cfg, plain_cfg):  # keep every detection, so that there is something to compare
        c.model.test_cfg.rcnn.score_thr = 0.0
    model = build(cfg)
    head = model.roi_head.bbox_head
    head.fasa.prob.fill_(1.0)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    for step in range(3):  # FASA's statistics and the virtual loss change the weights
        losses = model(**batch(model, seed=step), mode="loss")
        assert losses["loss_cls_fasa"].item() > 0
        optimizer.zero_grad()
        model.parse_losses(losses)[0].backward()
        optimizer.step()
    assert head.fasa.seen.sum() > 0 and head.fasa.mean.abs().sum() > 0

    plain = build(plain_cfg)
    state = {k: v for k, v in model.state_dict().items() if ".fasa." not in k}
    plain.load_state_dict(state)  # strict: every weight and BN statistic of the trained model
    model.eval()
    plain.eval()
    for seed in (10, 11, 12):
        data = batch(plain, training=False, seed=seed)
        with torch.no_grad():  # predict writes into the data samples it is given: one copy each
            a = model(**copy.deepcopy(data), mode="predict")
            b = plain(**copy.deepcopy(data), mode="predict")
        for x, y in zip(a, b, strict=True):
            assert len(y.pred_instances) > 0
            for key in ("bboxes", "scores", "labels", "masks"):
                got, expected = x.pred_instances[key], y.pred_instances[key]
                assert torch.equal(got, expected), f"batch {seed} {key}: differs from plain head"


def test_cascade_every_configured_stage(tmp_path, ann_file):
    cfg = cascade_config(tmp_path, ann_file, stages=(0, 2))
    model = build(cfg)
    heads = model.roi_head.bbox_head
    rng_before = {}
    for stage in (0, 2):
        heads[stage].fasa.prob.fill_(1.0)
        rng_before[stage] = heads[stage].fasa.rng_state.clone()
    losses = model(**batch(model), mode="loss")
    assert "s1.loss_cls_fasa" not in losses
    for stage in (0, 2):  # each stage its own engine, its loss scaled like the stage's others
        weight = cfg.model.roi_head.stage_loss_weights[stage]
        stage_losses = {"loss_cls_fasa": losses[f"s{stage}.loss_cls_fasa"] / weight}
        check_virtual_loss(
            stage_losses, heads[stage], rng_before[stage], "softmax", NUM_CLASSES + 1
        )


def test_bad_configuration_fails_at_build(tmp_path, ann_file):
    cfg = mask_rcnn_config(tmp_path, ann_file)
    cfg.model.roi_head.bbox_head.fasa.pop("ann_file")
    with pytest.raises(ValueError, match="fasa.ann_file is required"):
        build(cfg)
    cfg = mask_rcnn_config(tmp_path, ann_file)
    cfg.model.roi_head.bbox_head.type = "FASASharedNoSuchHead"
    with pytest.raises(KeyError, match="FASASharedNoSuchHead"):
        build(cfg)
    cfg = mask_rcnn_config(tmp_path, ann_file)
    cfg.model.roi_head.bbox_head.num_classes = NUM_CLASSES + 1
    with pytest.raises(ValueError, match="categories"):
        build(cfg)
