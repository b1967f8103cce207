"""FASA's overhead on a whole Mask R-CNN R50-FPN training step, through torchvision (no mmdet).

The GPU image has torchvision but no mmdet or mmcv, so this is the one full-detector step that
can be timed there. torchvision's ``maskrcnn_resnet50_fpn`` (random weights: nothing is
downloaded) with LVIS's 1203 classes + background, its defaults matching the mmdet LVIS configs
where it counts for FASA: 512 RoIs per image at 25% positives, a two-FC 1024-wide box head.
Two images per step (one GPU's share of the 8 x 2 LVIS batch), resized by the model to 800 on
the short side (1333 long) on a GPU; on a CPU 512 (the 2-core machine would take minutes per
round) and 128 in quick mode. Ground truth: 15 boxes with masks per image, classes drawn from
LVIS v1's instance distribution. Forward, loss, backward and an SGD step, then a device sync.

``fasa`` adds what ``fasa_fast.mmdet``'s head adds, glued to torchvision here: the box head's
1024-d features and the sampled RoIs' labels go to ``FASA.update``, and the virtual loss through
the predictor's ``cls_score`` is added to the losses. torchvision's label 0 is background, so
FASA's class ``c`` is torchvision's ``c + 1`` and background becomes -1 (skipped). The pair
``mask_rcnn_torchvision-<device>`` gives the FASA / plain ratio in the JSON.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fasa_fast import FASA
from tests.backends import need

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
GT_PER_IMAGE = 15


class FASAGlue(nn.Module):
    """Wraps torchvision's box predictor and ``select_training_samples`` to hand FASA the box
    features and the sampled labels of each training step."""

    def __init__(self, model: nn.Module, fasa: FASA):
        super().__init__()
        self.model, self.fasa = model, fasa
        heads = model.roi_heads
        self.predictor = heads.box_predictor
        self._features: torch.Tensor | None = None
        self._labels: torch.Tensor | None = None
        select = heads.select_training_samples

        def select_and_keep(proposals, targets):
            out = select(proposals, targets)
            self._labels = torch.cat(out[2]) - 1  # torchvision 0 = background -> FASA -1
            return out

        heads.select_training_samples = select_and_keep
        heads.box_predictor = _Recorder(self.predictor, self)

    def forward(self, images, targets) -> dict[str, torch.Tensor]:
        losses = self.model(images, targets)
        self.fasa.update(self._features.detach(), self._labels)
        losses["loss_fasa"] = self.fasa.virtual_loss(
            self.predictor.cls_score,
            lambda logits, labels: F.cross_entropy(logits, labels + 1, reduction="none"),
        )
        return losses


class _Recorder(nn.Module):
    def __init__(self, predictor: nn.Module, glue: FASAGlue):
        super().__init__()
        self.predictor = predictor
        self.glue = [glue]  # a list: not a submodule (the glue owns the model)

    def forward(self, x):
        self.glue[0]._features = x
        return self.predictor(x)


def make_batch(instance_counts, size, device, gen):
    h, w = (size, size * 5 // 3)
    images, targets = [], []
    for _ in range(2):
        xy = torch.rand(GT_PER_IMAGE, 2, generator=gen) * torch.tensor([w * 0.7, h * 0.7])
        wh = torch.rand(GT_PER_IMAGE, 2, generator=gen) * torch.tensor([w * 0.3, h * 0.3]) + 8
        boxes = torch.cat([xy, xy + wh], 1)
        masks = torch.zeros(GT_PER_IMAGE, h, w, dtype=torch.uint8)
        for i, (x0, y0, x1, y1) in enumerate(boxes.round().long().tolist()):
            masks[i, y0:y1, x0:x1] = 1
        labels = torch.multinomial(instance_counts, GT_PER_IMAGE, replacement=True, generator=gen)
        images.append(torch.rand(3, h, w, generator=gen).to(device))
        targets.append(
            {
                "boxes": boxes.to(device),
                "labels": (labels + 1).to(device),
                "masks": masks.to(device),
            }
        )
    return images, targets


@pytest.fixture(scope="module", params=DEVICES)
def detector(request, quick, shape, instance_counts):
    detection = need("torchvision").models.detection
    device = request.param
    size = 128 if quick else (800 if device == "cuda" else 512)
    torch.manual_seed(0)
    plain, with_fasa = (
        detection.maskrcnn_resnet50_fpn(
            weights=None,
            weights_backbone=None,
            num_classes=shape.num_classes + 1,
            min_size=size,
            max_size=size * 5 // 3,
        )
        for _ in range(2)
    )
    with_fasa.load_state_dict(plain.state_dict())  # same weights, before the glue wraps it
    fasa = FASA(shape.num_classes, 1024, instance_counts.long(), warmup_epochs=0)
    fasa.seen.fill_(1)  # as after the first epoch: every class drawn at its rate
    fasa.std.fill_(1.0)
    models = {
        "plain": plain.to(device).train(),
        "fasa": FASAGlue(with_fasa, fasa).to(device).train(),
    }
    gen = torch.Generator().manual_seed(0)
    return device, size, models, make_batch(instance_counts, size, device, gen)


@pytest.mark.parametrize("variant", ["plain", "fasa"])
def test_mask_rcnn_torchvision_step(run, benchmark, quick, shape, detector, variant):
    device, size, models, (images, targets) = detector
    model = models[variant]
    optim = torch.optim.SGD(model.parameters(), lr=1e-4)

    def step():
        losses = model(images, targets)
        loss = sum(losses.values())
        optim.zero_grad(set_to_none=True)
        loss.backward()
        optim.step()
        if device == "cuda":
            torch.cuda.synchronize()
        return loss, losses

    if not quick:
        for _ in range(2):  # cuDNN's algorithm search and the allocator's first growth
            step()
    benchmark.extra_info.update(
        pair=f"mask_rcnn_torchvision-{device}",
        variant=variant,
        device=device,
        image_short_side=size,
        num_classes=shape.num_classes,
    )
    loss, losses = run(step)
    assert torch.isfinite(loss)
    if variant == "fasa":
        assert "loss_fasa" in losses and torch.isfinite(losses["loss_fasa"])
