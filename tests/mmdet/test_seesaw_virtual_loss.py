"""``virtual_loss='seesaw'``: Seesaw's loss for the virtual features, against a float64 re-derivation
of the Seesaw formulas (Wang et al. 2021), and Seesaw's counters untouched by virtual rows."""

from __future__ import annotations

import pytest
import torch

from tests.mmdet.helpers import NUM_CLASSES, batch, build, mask_rcnn_config, toy_dataset
from tests.oracle import seesaw_row_loss

SEESAW = dict(type="SeesawLoss", p=0.8, q=2.0, num_classes=NUM_CLASSES, loss_weight=1.0)


@pytest.fixture(scope="module")
def ann_file(tmp_path_factory):
    return toy_dataset(tmp_path_factory.mktemp("toy"))["train"]


def test_seesaw_per_row_loss_matches_the_formula(tmp_path, ann_file):
    model = build(
        mask_rcnn_config(tmp_path, ann_file, loss_cls=SEESAW, normed=True, virtual_loss="seesaw")
    )
    head = model.roi_head.bbox_head
    cum = torch.randint(0, 500, (NUM_CLASSES + 1,)).float()
    head.loss_cls.cum_samples.copy_(cum)
    scores = torch.randn(12, NUM_CLASSES + 2) * 3
    labels = torch.randint(0, NUM_CLASSES, (12,))
    got = head.fasa_per_row_loss(scores, labels)
    expected = [
        seesaw_row_loss(
            scores[i, :NUM_CLASSES], scores[i, NUM_CLASSES:], int(labels[i]), cum, 0.8, 2.0
        )
        for i in range(12)
    ]
    assert got.shape == (12,)
    torch.testing.assert_close(
        got.double(), torch.tensor(expected, dtype=torch.float64), rtol=1e-5, atol=1e-5
    )
    assert torch.equal(head.loss_cls.cum_samples, cum)  # read, never updated


def test_seesaw_counters_see_real_rois_only(tmp_path, ann_file):
    model = build(
        mask_rcnn_config(tmp_path, ann_file, loss_cls=SEESAW, normed=True, virtual_loss="seesaw")
    )
    head = model.roi_head.bbox_head
    head.fasa.prob.fill_(1.0)
    targets = []
    original = head.get_targets

    def spy(*args, **kwargs):
        out = original(*args, **kwargs)
        targets.append(out[0])
        return out

    head.get_targets = spy
    data = batch(model)
    model(**data, mode="loss")  # the first step folds the statistics in: nothing drawn yet
    before = head.loss_cls.cum_samples.clone()
    losses = model(**data, mode="loss")
    assert losses["loss_cls_fasa"].item() > 0  # virtual rows were drawn and scored
    real = torch.bincount(targets[-1], minlength=NUM_CLASSES + 1).float()
    torch.testing.assert_close(head.loss_cls.cum_samples - before, real)


def test_seesaw_virtual_loss_needs_a_seesaw_head(tmp_path, ann_file):
    with pytest.raises(ValueError, match="virtual_loss: 'seesaw' needs loss_cls=SeesawLoss, got"):
        build(mask_rcnn_config(tmp_path, ann_file, virtual_loss="seesaw"))
