"""FASA variants of MMDetection's ConvFC box heads (thin glue over ``fasa_fast.FASA``).

The head captures the classification feature (the input of ``fc_cls``) with a forward
pre-hook, so ``forward`` and every return signature stay mmdet's own and inference is
unchanged. In ``loss_and_target`` it folds the features of the sampled RoIs into the engine's
statistics and adds ``loss_cls_fasa``, the virtual-feature loss, as its own loss entry.

The virtual-feature loss never goes through the head's ``loss_cls``: stateful losses (Seesaw's
``cum_samples``, EQLv2's gradient accumulators) keep statistics of real samples only. It is a
stateless per-row loss on the classifier's logits: ``virtual_loss='softmax'`` (default: softmax
cross-entropy over the class logits, plus background for C+1 heads), ``'sigmoid'`` (binary
cross-entropy against the one-hot class, for sigmoid-based losses such as EQLv2) or
``'seesaw'`` (heads with ``SeesawLoss``: Seesaw's loss for a positive sample — the class term
with its mitigation and compensation factors from the head's current ``cum_samples``, plus the
objectness term — computed without adding the virtual rows to ``cum_samples``).

Config::

    bbox_head=dict(
        type='FASAShared2FCBBoxHead',
        fasa=dict(data_root='data/lvis_v1/',                      # optional prefix of ann_file
                  ann_file='annotations/lvis_v1_train.json',      # per-class counts
                  loss_weight=0.1, warmup_epochs=1, ...),         # fasa_fast.FASA options
        ...)
"""

from __future__ import annotations

import os
from typing import Any

import torch
from mmdet.models.losses import SeesawLoss
from mmdet.models.roi_heads.bbox_heads import Shared2FCBBoxHead, Shared4Conv1FCBBoxHead
from mmdet.registry import MODELS

from fasa_fast import losses
from fasa_fast.annotations import class_counts_from_annotations
from fasa_fast.engine import FASA
from fasa_fast.losses import VIRTUAL_LOSSES


class FASABBoxHeadMixin:
    """Adds FASA to a ConvFC box head; call ``init_fasa`` at the end of ``__init__``."""

    def init_fasa(self, fasa: dict[str, Any] | None) -> None:
        if not fasa or not fasa.get("ann_file"):
            raise ValueError(
                f"{type(self).__name__}: fasa.ann_file is required: FASA reads the per-class "
                "training instance counts from the training annotation file"
            )
        options = dict(fasa)
        ann_file = options.pop("ann_file")
        data_root = options.pop("data_root", None)
        if data_root:  # mmdet's convention: ann_file relative to data_root
            ann_file = os.path.join(data_root, ann_file)
        self.fasa_virtual_loss = options.pop("virtual_loss", "softmax")
        # FASAHook moves the engine past its warm-up and adapts it; a head trained without it
        # would silently never draw a virtual feature (require_hook=False: a custom trainer
        # calls fasa.start_epoch / fasa.adapt itself, or a unit test drives the head)
        self.fasa_require_hook = bool(options.pop("require_hook", True))
        self.fasa_hooked = False
        if self.fasa_virtual_loss not in VIRTUAL_LOSSES:
            raise ValueError(
                f"fasa.virtual_loss: expected one of {VIRTUAL_LOSSES}, got {self.fasa_virtual_loss!r}"
            )
        if self.fasa_virtual_loss == "seesaw" and not isinstance(self.loss_cls, SeesawLoss):
            raise ValueError(
                f"fasa.virtual_loss: 'seesaw' needs loss_cls=SeesawLoss, got "
                f"{type(self.loss_cls).__name__}"
            )
        counts = class_counts_from_annotations(ann_file)
        if counts.num_classes != self.num_classes:
            raise ValueError(
                f"{type(self).__name__}: num_classes={self.num_classes} but {ann_file} has "
                f"{counts.num_classes} categories"
            )
        if not self.with_cls:
            raise ValueError(
                f"{type(self).__name__}: FASA needs the classification branch (with_cls=True)"
            )
        options.setdefault("class_names", counts.display_names())
        self.fasa = FASA(
            self.num_classes, self.fc_cls.in_features, counts.instance_counts, **options
        )
        self.fasa_class_frequency = counts.frequency  # LVIS r/c/f per class, for summaries
        self._fasa_features: torch.Tensor | None = None
        self._fasa_in_virtual_pass = False
        self.fc_cls.register_forward_pre_hook(self._capture_cls_features)

    def _capture_cls_features(self, module, args) -> None:
        if self.training and not self._fasa_in_virtual_pass:
            self._fasa_features = args[0]

    def fasa_class_logits(self, cls_score: torch.Tensor) -> torch.Tensor:
        """The logits the virtual loss is taken over: C+1 for softmax heads, C otherwise."""
        if self.custom_cls_channels:  # e.g. Seesaw: [C class scores, 2 objectness scores]
            return cls_score[:, : self.num_classes]
        return cls_score[:, : self.num_classes + 1]

    def fasa_per_row_loss(self, cls_score: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Stateless per-row classification loss (virtual features and the adaptation pass):
        the head's ``cls_score`` cut to what ``fasa_fast.losses`` expects."""
        if self.fasa_virtual_loss == "seesaw":
            seesaw = self.loss_cls  # cum_samples is read here, never updated
            classes, objectness = seesaw._split_cls_score(cls_score)
            cum_samples = seesaw.cum_samples[: self.num_classes]
            return losses.seesaw_positive(
                classes, objectness, labels, cum_samples, seesaw.p, seesaw.q, seesaw.eps
            )
        logits = self.fasa_class_logits(cls_score)
        if self.fasa_virtual_loss == "sigmoid":
            return losses.one_hot_bce(logits[:, : self.num_classes], labels)
        return losses.softmax_ce(logits, labels)

    def fasa_virtual_loss_fn(self):
        """The per-row loss the engine's virtual loss takes: None (the engine's own softmax
        cross-entropy over all of ``fc_cls``'s outputs, one fused reduction) where that is
        ``fasa_per_row_loss`` — a softmax head without custom channels, whose ``fc_cls`` has
        exactly the logits ``fasa_class_logits`` keeps — else ``fasa_per_row_loss``."""
        if self.fasa_virtual_loss == "softmax" and not self.custom_cls_channels:
            return None
        return self.fasa_per_row_loss

    def loss_and_target(
        self,
        cls_score,
        bbox_pred,
        rois,
        sampling_results,
        rcnn_train_cfg,
        concat=True,
        reduction_override=None,
    ) -> dict:
        out = super().loss_and_target(
            cls_score, bbox_pred, rois, sampling_results, rcnn_train_cfg, concat, reduction_override
        )
        features, self._fasa_features = self._fasa_features, None
        if features is None or not concat:
            return out
        if self.fasa_require_hook and not self.fasa_hooked:
            raise RuntimeError(
                f"{type(self).__name__}: training without FASAHook: add "
                "custom_hooks=[dict(type='FASAHook')] to the config (a config that sets its own "
                "custom_hooks replaces the inherited list), or set fasa.require_hook=False and "
                "drive fasa.start_epoch() / fasa.adapt() yourself"
            )
        labels = out["bbox_targets"][0]  # background is num_classes: skipped by the engine
        self.fasa.update(features, labels)
        self._fasa_in_virtual_pass = True
        try:
            out["loss_bbox"]["loss_cls_fasa"] = self.fasa.virtual_loss(
                self.fc_cls, self.fasa_virtual_loss_fn()
            )
        finally:
            self._fasa_in_virtual_pass = False
        return out


@MODELS.register_module()
class FASAShared2FCBBoxHead(FASABBoxHeadMixin, Shared2FCBBoxHead):
    """``Shared2FCBBoxHead`` with FASA; ``fasa``: ``ann_file`` plus ``fasa_fast.FASA`` options."""

    def __init__(self, *args, fasa: dict[str, Any] | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.init_fasa(fasa)


@MODELS.register_module()
class FASAShared4Conv1FCBBoxHead(FASABBoxHeadMixin, Shared4Conv1FCBBoxHead):
    """``Shared4Conv1FCBBoxHead`` with FASA; ``fasa``: ``ann_file`` plus ``fasa_fast.FASA`` options."""

    def __init__(self, *args, fasa: dict[str, Any] | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.init_fasa(fasa)
