"""FASA's training overhead, each as a ratio of two benchmarks measured in the same run.

- ``box_head``: forward, loss and backward of a Shared2FC box head on 2 x 512 RoIs (D = 1024,
  C = 1203, LVIS-distributed labels), plain vs FASA (statistics update + virtual-feature loss);
- ``mask_rcnn``: a whole Mask R-CNN training step through mmdet (ResNet-18 FPN, 2 images of
  256 x 256 on CPU; 1203 LVIS classes), plain vs FASA head;
- ``adaptation``: one ``FASA.adapt()`` at LVIS size (grouping 1203 classes on 1024-D statistics)
  plus the adaptation forward of one image, for the amortised per-epoch cost (``report.py``).

Quick mode (``--quick``) shrinks the shapes and runs each once. The ratios are written into
the JSON by ``benchmarks/conftest.py`` (pairs sharing a ``pair`` key in ``extra_info``).
"""

from __future__ import annotations

import json

import pytest
import torch

from benchmarks.conftest import DEFAULT_STATS

pytest.importorskip("mmdet")


def lvis_ann_file(tmp_path_factory, num_classes):
    categories = sorted(json.loads(DEFAULT_STATS.read_text()), key=lambda c: c["id"])[:num_classes]
    path = tmp_path_factory.mktemp("ann") / "lvis_stats.json"
    path.write_text(json.dumps({"categories": categories}))
    return path


@pytest.fixture(scope="module")
def head_setup(tmp_path_factory, shape, instance_counts):
    from mmdet.models.roi_heads.bbox_heads import Shared2FCBBoxHead
    from mmdet.structures.bbox import bbox2roi
    from mmdet.testing import demo_mm_sampling_results
    from mmengine.config import ConfigDict
    from mmengine.structures import InstanceData

    import fasa_fast.mmdet  # noqa: F401
    from fasa_fast.mmdet import FASAShared2FCBBoxHead

    torch.manual_seed(0)
    ann = lvis_ann_file(tmp_path_factory, shape.num_classes)
    common = dict(
        in_channels=256, fc_out_channels=shape.dim, roi_feat_size=7, num_classes=shape.num_classes
    )
    plain = Shared2FCBBoxHead(**common)
    fasa = FASAShared2FCBBoxHead(
        **common, fasa=dict(ann_file=str(ann), warmup_epochs=0, require_hook=False)
    )
    fasa.load_state_dict(plain.state_dict(), strict=False)
    gen = torch.Generator().manual_seed(0)
    proposals, gts = [], []
    per_image = shape.rois // 2
    for _ in range(2):
        centres = torch.rand(40, 2, generator=gen) * 800
        sizes = torch.rand(40, 2, generator=gen) * 200 + 20
        gt_boxes = torch.cat([centres, centres + sizes], 1)
        labels = torch.multinomial(instance_counts, 40, replacement=True, generator=gen)
        jitter = torch.randn(per_image * 2, 4, generator=gen) * 20
        props = gt_boxes.repeat(per_image * 2 // 40 + 1, 1)[: per_image * 2] + jitter
        proposals.append(
            InstanceData(priors=props, bboxes=props, scores=torch.rand(len(props), generator=gen))
        )
        gts.append(InstanceData(bboxes=gt_boxes, labels=labels))
    sampler = dict(
        type="RandomSampler",
        num=per_image,
        pos_fraction=0.25,
        neg_pos_ub=-1,
        add_gt_as_proposals=True,
    )
    sampling = demo_mm_sampling_results(proposals, gts, sampler_cfg=sampler)
    rois = bbox2roi([s.priors for s in sampling])
    feats = torch.randn(len(rois), 256, 7, 7)
    train_cfg = ConfigDict(pos_weight=-1)
    return plain, fasa, feats, rois, sampling, train_cfg


def head_step(head, feats, rois, sampling, train_cfg):
    head.zero_grad(set_to_none=True)
    cls_score, bbox_pred = head(feats)
    out = head.loss_and_target(cls_score, bbox_pred, rois, sampling, train_cfg)
    loss = sum(v for k, v in out["loss_bbox"].items() if "loss" in k)
    loss.backward()
    return loss


@pytest.mark.parametrize("variant", ["plain", "fasa"])
def test_box_head_step(run, benchmark, shape, head_setup, variant):
    plain, fasa, feats, rois, sampling, train_cfg = head_setup
    head = fasa if variant == "fasa" else plain
    head.train()
    benchmark.extra_info.update(pair="box_head", variant=variant, rois=len(rois), shape=vars(shape))
    loss = run(head_step, head, feats, rois, sampling, train_cfg)
    assert torch.isfinite(loss)


@pytest.fixture(scope="module")
def mask_rcnn_setup(tmp_path_factory, shape, quick):
    from tests.mmdet.helpers import base_config, build, shrink_backbone

    tmp = tmp_path_factory.mktemp("cfg")
    ann = lvis_ann_file(tmp_path_factory, shape.num_classes)
    models = {}
    for variant in ("plain", "fasa"):
        cfg = base_config(tmp, "mask-rcnn_r50_fpn.py")
        shrink_backbone(cfg)
        roi = cfg.model.roi_head
        roi.bbox_roi_extractor.out_channels = 64
        roi.mask_roi_extractor.out_channels = 64
        roi.mask_head.update(in_channels=64, conv_out_channels=64, num_classes=shape.num_classes)
        roi.bbox_head.update(
            in_channels=64, fc_out_channels=shape.dim, num_classes=shape.num_classes
        )
        if variant == "fasa":
            roi.bbox_head.update(
                type="FASAShared2FCBBoxHead",
                fasa=dict(ann_file=str(ann), warmup_epochs=0, require_hook=False),
            )
        models[variant] = build(cfg)
    models["fasa"].load_state_dict(models["plain"].state_dict(), strict=False)
    from mmdet.testing import demo_mm_inputs

    size = 128 if quick else 256
    torch.manual_seed(0)
    packed = demo_mm_inputs(
        2, [[3, size, size]] * 2, num_items=[8, 8], num_classes=shape.num_classes, with_mask=True
    )
    return models, packed


@pytest.mark.parametrize("variant", ["plain", "fasa"])
def test_mask_rcnn_step(run, benchmark, shape, mask_rcnn_setup, variant):
    models, packed = mask_rcnn_setup
    model = models[variant].train()
    optim = torch.optim.SGD(model.parameters(), lr=1e-4)

    def step():
        data = model.data_preprocessor(packed, True)
        loss, _ = model.parse_losses(model(**data, mode="loss"))
        optim.zero_grad(set_to_none=True)
        loss.backward()
        optim.step()
        return loss

    benchmark.extra_info.update(pair="mask_rcnn", variant=variant, shape=vars(shape))
    loss = run(step)
    assert torch.isfinite(loss)


def test_adaptation(run, benchmark, shape, instance_counts):
    from fasa_fast import FASA

    fasa = FASA(shape.num_classes, shape.dim, instance_counts.long())
    gen = torch.Generator().manual_seed(0)
    fasa.mean.copy_(torch.randn(shape.num_classes, shape.dim, generator=gen))
    fasa.std.copy_(torch.rand(shape.num_classes, shape.dim, generator=gen) + 0.5)
    fasa.seen.fill_(1)

    def adapt():
        fasa.accumulate_adaptation_loss(
            torch.arange(shape.num_classes), losses=torch.rand(shape.num_classes)
        )
        return fasa.adapt()

    benchmark.extra_info.update(pair="adaptation", variant="adapt", shape=vars(shape))
    summary = run(adapt)
    assert summary["num_groups"] >= 1


def test_fasa_extra_work(run, benchmark, shape, head_setup):
    """Only what FASA adds to a box-head step: the statistics update of the step's RoI
    features, the virtual-feature draw, and the virtual loss's forward and backward through
    ``fc_cls``. Timed alone it is far above the noise that the paired step timings carry."""
    _, head, feats, rois, sampling, train_cfg = head_setup
    head.train()
    with torch.no_grad():
        features = head.shared_fcs[1](head.relu(head.shared_fcs[0](feats.flatten(1)))).relu()
    labels = head.get_targets(sampling, train_cfg)[0]

    def extra():
        head.zero_grad(set_to_none=True)
        head.fasa.update(features, labels)
        loss = head.fasa.virtual_loss(head.fc_cls, head.fasa_per_row_loss)
        loss.backward()
        return loss

    benchmark.extra_info.update(extra_of="box_head", shape=vars(shape))
    loss = run(extra)
    assert torch.isfinite(loss)
