"""FASA's overhead on a box-head training step in plain torch, on every device (no mmdet).

The GPU image has no mmdet, so ``test_bench_overhead.py`` skips there; this module rebuilds the
part of a Mask R-CNN step that FASA touches from torch alone, the same way mmdet's
``Shared2FCBBoxHead`` computes it: RoI features ``[R, 256, 7, 7]`` -> two 1024-wide FC layers ->
``fc_cls`` (C + 1 logits) and class-specific ``fc_reg`` (4C), softmax cross-entropy plus smooth
L1 on the positives' boxes, forward and backward, then an SGD step. R = 1024 RoIs (2 images x
512, 25% positives drawn from LVIS v1's instance distribution), C = 1203, as one GPU sees them in
the 8-GPU LVIS configs. ``fasa`` adds what the mmdet head adds: ``FASA.update`` on the
classification features and the virtual loss through ``fc_cls``.

Pairs ``box_head_torch-<device>`` (plain / fasa) give the overhead ratio in the JSON
(``benchmarks/conftest.py``); ``test_fasa_work_alone`` times FASA's own work with nothing else
around it. The box head is a small part of the whole detector step (backbone, FPN, RPN and mask
head come on top), so its ratio bounds FASA's overhead on the full step from above.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fasa_fast import FASA

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


class BoxHead(nn.Module):
    """Shared2FCBBoxHead's layers: flatten, fc 1024, fc 1024, fc_cls (C + 1), fc_reg (4C)."""

    def __init__(self, num_classes: int, dim: int, in_channels: int = 256, roi: int = 7):
        super().__init__()
        self.num_classes = num_classes
        self.shared_fcs = nn.Sequential(
            nn.Linear(in_channels * roi * roi, dim), nn.ReLU(), nn.Linear(dim, dim), nn.ReLU()
        )
        self.fc_cls = nn.Linear(dim, num_classes + 1)
        self.fc_reg = nn.Linear(dim, 4 * num_classes)

    def forward(self, rois: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x = self.shared_fcs(rois.flatten(1))
        return x, self.fc_cls(x), self.fc_reg(x)

    def loss(self, x, cls_score, bbox_pred, labels, targets) -> torch.Tensor:
        loss_cls = F.cross_entropy(cls_score, labels)
        pos = (labels < self.num_classes).nonzero().squeeze(1)
        pred = bbox_pred.view(len(labels), self.num_classes, 4)[pos, labels[pos]]
        loss_bbox = F.smooth_l1_loss(pred, targets[pos], beta=1.0, reduction="sum") / len(labels)
        return loss_cls + loss_bbox


@pytest.fixture(scope="module", params=DEVICES)
def setup(request, shape, instance_counts):
    device = request.param
    gen = torch.Generator().manual_seed(0)
    rois = torch.randn(shape.rois, 256, 7, 7, generator=gen)
    labels = torch.full((shape.rois,), shape.num_classes)  # background
    labels[: shape.rois // 4] = torch.multinomial(
        instance_counts, shape.rois // 4, replacement=True, generator=gen
    )
    targets = torch.randn(shape.rois, 4, generator=gen)
    torch.manual_seed(0)
    head = BoxHead(shape.num_classes, shape.dim)
    fasa = FASA(shape.num_classes, shape.dim, instance_counts.long(), warmup_epochs=0)
    # every class seen once, as after the first epoch: the draw selects at the trained rate
    fasa.seen.fill_(1)
    fasa.std.fill_(1.0)
    to = dict(device=device)
    return device, head.to(**to), fasa.to(**to), rois.to(**to), labels.to(**to), targets.to(**to)


def step(head, optim, rois, labels, targets, fasa=None):
    optim.zero_grad(set_to_none=True)
    x, cls_score, bbox_pred = head(rois)
    loss = head.loss(x, cls_score, bbox_pred, labels, targets)
    if fasa is not None:
        fasa.update(x.detach(), labels)
        loss = loss + fasa.virtual_loss(head.fc_cls)
    loss.backward()
    optim.step()
    return loss


@pytest.mark.parametrize("variant", ["plain", "fasa"])
def test_box_head_torch_step(run, benchmark, shape, setup, variant):
    device, head, fasa, rois, labels, targets = setup
    optim = torch.optim.SGD(head.parameters(), lr=1e-4)
    use = fasa if variant == "fasa" else None
    benchmark.extra_info.update(
        pair=f"box_head_torch-{device}", variant=variant, device=device, shape=vars(shape)
    )

    def timed():
        loss = step(head, optim, rois, labels, targets, use)
        sync(device)
        return loss

    loss = run(timed)
    assert torch.isfinite(loss)


def test_fasa_work_alone(run, benchmark, shape, setup):
    """Only FASA's part of the step: statistics update, draw, virtual loss forward + backward."""
    device, head, fasa, rois, labels, targets = setup
    with torch.no_grad():
        x = head.shared_fcs(rois.flatten(1))

    def extra():
        head.zero_grad(set_to_none=True)
        fasa.update(x, labels)
        loss = fasa.virtual_loss(head.fc_cls)
        loss.backward()
        sync(device)
        return loss

    benchmark.extra_info.update(extra_of=f"box_head_torch-{device}", device=device)
    loss = run(extra)
    assert torch.isfinite(loss)
    # a single draw may select no class (the loss is then 0); twenty in a row never do here
    assert sum(int(fasa.sample()[2][0]) for _ in range(20)) > 0, "no virtual features drawn"
