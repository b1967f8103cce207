"""FASA box heads inside mmdet's RoI heads: losses, statistics, inference, stateful losses."""

from __future__ import annotations

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


@pytest.fixture(scope="module")
def ann_file(tmp_path_factory):
    return toy_dataset(tmp_path_factory.mktemp("toy"))["train"]


def test_training_step_adds_loss_cls_fasa_and_updates_statistics(tmp_path, ann_file):
    model = build(mask_rcnn_config(tmp_path, ann_file))
    head = model.roi_head.bbox_head
    head.fasa.prob.fill_(1.0)
    losses = model(**batch(model), mode="loss")
    assert "loss_cls_fasa" in losses and losses["loss_cls_fasa"].item() > 0
    assert (head.fasa.seen > 0).sum() > 0  # the positives' classes were folded in
    total, _ = model.parse_losses(losses)
    total.backward()
    assert head.fc_cls.weight.grad is not None


def test_inference_equals_the_plain_head(tmp_path, ann_file):
    fasa_model = build(mask_rcnn_config(tmp_path, ann_file)).eval()
    plain = build(mask_rcnn_config(tmp_path, fasa=False)).eval()
    state = {k: v for k, v in fasa_model.state_dict().items() if ".fasa." not in k}
    plain.load_state_dict(state)
    data = batch(plain, training=False)
    with torch.no_grad():
        a = fasa_model(**data, mode="predict")
        b = plain(**data, mode="predict")
    for x, y in zip(a, b, strict=True):
        assert torch.equal(x.pred_instances.bboxes, y.pred_instances.bboxes)
        assert torch.equal(x.pred_instances.scores, y.pred_instances.scores)
        assert torch.equal(x.pred_instances.labels, y.pred_instances.labels)


def count_loss_calls(head):
    calls = []
    original = head.loss_cls.forward

    def spy(cls_score, labels, *args, **kwargs):
        calls.append(labels.shape[0])
        return original(cls_score, labels, *args, **kwargs)

    head.loss_cls.forward = spy
    return calls


def test_seesaw_statistics_see_real_samples_only(tmp_path, ann_file):
    seesaw = dict(type="SeesawLoss", p=0.8, q=2.0, num_classes=NUM_CLASSES, loss_weight=1.0)
    model = build(mask_rcnn_config(tmp_path, ann_file, loss_cls=seesaw, normed=True))
    head = model.roi_head.bbox_head
    head.fasa.prob.fill_(1.0)
    calls = count_loss_calls(head)
    losses = model(**batch(model), mode="loss")
    assert losses["loss_cls_fasa"].item() > 0  # virtual features were drawn and trained on
    assert len(calls) == 1  # loss_cls saw the real RoIs once, never the virtual features
    assert head.loss_cls.cum_samples.sum().item() == calls[0]


def test_eqlv2_statistics_see_real_samples_only(tmp_path, ann_file):
    eqlv2 = dict(type="EQLV2Loss", num_classes=NUM_CLASSES)
    model = build(mask_rcnn_config(tmp_path, ann_file, loss_cls=eqlv2, virtual_loss="sigmoid"))
    head = model.roi_head.bbox_head
    head.fasa.prob.fill_(1.0)
    calls = count_loss_calls(head)
    losses = model(**batch(model), mode="loss")
    assert losses["loss_cls_fasa"].item() > 0 and len(calls) == 1
    grads_after_one_real_call = head.loss_cls.pos_grad.clone()
    model.parse_losses(losses)[0].backward()
    assert torch.equal(head.loss_cls.pos_grad, grads_after_one_real_call)


def test_cascade_every_configured_stage(tmp_path, ann_file):
    model = build(cascade_config(tmp_path, ann_file, stages=(0, 2)))
    losses = model(**batch(model), mode="loss")
    assert {"s0.loss_cls_fasa", "s2.loss_cls_fasa"} <= set(losses)
    assert "s1.loss_cls_fasa" not in losses


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
