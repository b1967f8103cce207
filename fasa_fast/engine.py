"""The FASA engine: framework-free state and logic of FASA (``shared/docs/FASA_METHOD.md``).

``FASA`` owns the per-class statistics, the sampling probabilities, the adaptation
accumulators and the random state, all as buffers (plus two counters as extra state), so a
``state_dict`` round trip continues a run bit for bit. It knows nothing of MMDetection: a
detector's box head or a plain classifier drives it through four calls.

Training step (no host synchronisation, fixed shapes)::

    fasa.update(cls_features, labels)              # running mean/std of positive features
    loss = loss + fasa.virtual_loss(fc_cls)        # 0 during warm-up or when nothing drawn

Once per epoch::

    fasa.start_epoch(epoch)                       # warm-up bookkeeping
    for logits, labels in adaptation_data:
        fasa.accumulate_adaptation_loss(labels, logits=logits)
    summary = fasa.adapt()                        # group-wise alpha/beta step of the probabilities
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from fasa_fast.annotations import class_counts_from_annotations
from fasa_fast.grouping import GROUPING_METHODS, group_classes
from fasa_fast.ops import make_rng_state, sample_virtual_features, segmented_stats_update_

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def initial_probabilities(
    instance_counts: torch.Tensor, scale: float = 1.0, power: float = 1.0
) -> torch.Tensor:
    """Eq. 4: ``p_c = scale * (1/N_c)^power / sum_j (1/N_j)^power``, clamped to [0, 1]."""
    inverse = instance_counts.double().reciprocal().pow(power)
    return (scale * inverse / inverse.sum()).clamp(0.0, 1.0).float()


class FASA(nn.Module):
    """Feature augmentation and sampling adaptation for a classifier with ``num_classes`` classes.

    Args:
        num_classes: C, foreground classes (labels ``0..C-1``; others are skipped).
        feat_dim: D, the dimension of the classifier's input features.
        instance_counts: ``[C]`` training instances per class (all > 0), for Eq. 4.
        momentum: running-statistics momentum (paper: 0.1).
        momentum_on_var: average the variance, as the public reference code does.
        loss_weight: weight of the virtual-feature loss (paper: 0.1).
        k: virtual features per selected class.
        capacity: rows reserved for virtual features per step (fixed shape); classes beyond it
            are dropped fairly (see ``sample_virtual_features``).
        init_scale, power: ``s`` and the power of Eq. 4.
        alpha, beta: probability multipliers when a group's loss fell / rose (1.1 / 0.9).
        warmup_epochs: epochs with statistics only, before virtual features and adaptation.
        grouping: ``"dbscan"`` (Fisher distance, paper) or ``"affinity"`` (reference code).
        grouping_params: keyword arguments of ``fasa_fast.grouping.group_classes``.
        seed: seed of the virtual-feature draws.
    """

    def __init__(
        self,
        num_classes: int,
        feat_dim: int,
        instance_counts: torch.Tensor | list[int],
        *,
        momentum: float = 0.1,
        momentum_on_var: bool = False,
        loss_weight: float = 0.1,
        k: int = 1,
        capacity: int = 64,
        init_scale: float = 1.0,
        power: float = 1.0,
        alpha: float = 1.1,
        beta: float = 0.9,
        warmup_epochs: int = 1,
        grouping: str = "dbscan",
        grouping_params: dict[str, Any] | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        counts = torch.as_tensor(instance_counts)
        if num_classes < 1:
            raise ValueError(f"num_classes: expected >= 1, got {num_classes}")
        if feat_dim < 1:
            raise ValueError(f"feat_dim: expected >= 1, got {feat_dim}")
        if counts.dtype.is_floating_point or counts.dtype == torch.bool:
            raise TypeError(f"instance_counts: expected integer counts, got dtype {counts.dtype}")
        if counts.shape != (num_classes,):
            raise ValueError(
                f"instance_counts: expected one count per class, shape ({num_classes},), got "
                f"{tuple(counts.shape)}"
            )
        if (counts <= 0).any():
            bad = torch.nonzero(counts <= 0).flatten()[:5].tolist()
            raise ValueError(
                f"instance_counts: every class needs at least one training instance for Eq. 4; "
                f"classes {bad} have none"
            )
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"momentum: expected a value in [0, 1], got {momentum}")
        if grouping not in GROUPING_METHODS:
            raise ValueError(f"grouping: expected one of {GROUPING_METHODS}, got {grouping!r}")
        if k < 1 or capacity < 0 or warmup_epochs < 0:
            raise ValueError(
                f"k >= 1, capacity >= 0 and warmup_epochs >= 0 expected, got {k}, {capacity}, {warmup_epochs}"
            )
        if alpha <= 0 or beta <= 0:
            raise ValueError(f"alpha/beta: expected positive multipliers, got {alpha}, {beta}")
        self.num_classes, self.feat_dim = num_classes, feat_dim
        self.momentum, self.momentum_on_var = float(momentum), bool(momentum_on_var)
        self.loss_weight, self.k, self.capacity = float(loss_weight), int(k), int(capacity)
        self.alpha, self.beta, self.warmup_epochs = float(alpha), float(beta), int(warmup_epochs)
        self.grouping, self.grouping_params = grouping, dict(grouping_params or {})
        self.seed = int(seed)

        self.register_buffer("instance_counts", counts.long().clone())
        self.register_buffer("mean", torch.zeros(num_classes, feat_dim))
        self.register_buffer("std", torch.zeros(num_classes, feat_dim))
        self.register_buffer("seen", torch.zeros(num_classes, dtype=torch.long))
        self.register_buffer("prob", initial_probabilities(counts, init_scale, power))
        self.register_buffer("rng_state", make_rng_state(seed))
        # adaptation: this pass's accumulators and the previous adaptation's per-class losses
        self.register_buffer("loss_sum", torch.zeros(num_classes, dtype=torch.float64))
        self.register_buffer("loss_count", torch.zeros(num_classes, dtype=torch.float64))
        self.register_buffer("prev_class_loss", torch.zeros(num_classes, dtype=torch.float64))
        self.register_buffer("prev_class_valid", torch.zeros(num_classes, dtype=torch.bool))
        self.register_buffer("groups", torch.full((num_classes,), -1, dtype=torch.long))
        self.epoch = 0  # host-side counters (extra state): never read from the device
        self.num_adaptations = 0

    @classmethod
    def from_annotation_file(cls, path: str | Path, feat_dim: int, **kwargs: Any) -> FASA:
        """Build from an LVIS (``instance_count``) or COCO-style (counted) annotation file."""
        counts = class_counts_from_annotations(path)
        return cls(counts.num_classes, feat_dim, counts.instance_counts, **kwargs)

    # ---- state ------------------------------------------------------------------------------
    def get_extra_state(self) -> dict[str, int]:
        return {"epoch": self.epoch, "num_adaptations": self.num_adaptations}

    def set_extra_state(self, state: dict[str, int]) -> None:
        self.epoch = int(state["epoch"])
        self.num_adaptations = int(state["num_adaptations"])

    @property
    def augmenting(self) -> bool:
        """Whether virtual features are drawn this epoch (after the warm-up)."""
        return self.epoch >= self.warmup_epochs

    def start_epoch(self, epoch: int) -> None:
        """Tell the engine which (0-based) training epoch begins."""
        self.epoch = int(epoch)

    # ---- training step ----------------------------------------------------------------------
    def _check_step_inputs(self, features: torch.Tensor, labels: torch.Tensor) -> None:
        if features.dim() != 2 or features.shape[1] != self.feat_dim:
            raise ValueError(
                f"features: expected [N, {self.feat_dim}] (feat_dim), got {tuple(features.shape)}"
            )
        if labels.dtype not in (torch.int64, torch.int32):
            raise TypeError(f"labels: expected int64 or int32 class indices, got {labels.dtype}")

    def update(self, features: torch.Tensor, labels: torch.Tensor) -> None:
        """Fold one step's classification features into the running class statistics.

        ``labels`` may hold background (``>= C``) and ignored (``< 0``) rows: they are skipped.
        """
        self._check_step_inputs(features, labels)
        segmented_stats_update_(
            features, labels, self.mean, self.std, self.seen, self.momentum, self.momentum_on_var
        )

    def sample(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Draw this step's virtual features: ``(features [capacity, D], labels, counts)``."""
        return sample_virtual_features(
            self.mean, self.std, self.seen, self.prob, self.rng_state, self.k, self.capacity
        )

    def virtual_loss(
        self,
        classifier: Callable[[torch.Tensor], torch.Tensor],
        loss_fn: LossFn | None = None,
    ) -> torch.Tensor:
        """``loss_weight`` times the mean classification loss of this step's virtual features.

        ``classifier`` maps ``[M, D]`` features to logits (an ``nn.Linear``, mmdet's
        ``NormedLinear``, any head); ``loss_fn(logits, labels) -> [M]`` per-row losses, stateless
        (default: softmax cross-entropy). Padding rows are masked out on the device; a step
        without virtual features (warm-up, or none selected) returns a zero that is still
        connected to the classifier's graph and lives on its device.
        """
        if not self.augmenting:
            empty = self.mean.new_zeros(0, self.feat_dim)
            return classifier(empty).sum() * 0.0
        features, labels, _ = self.sample()
        logits = classifier(features)
        targets = labels.clamp(min=0)
        per_row = (
            loss_fn(logits, targets)
            if loss_fn is not None
            else F.cross_entropy(logits, targets, reduction="none")
        )
        if per_row.shape != labels.shape:
            raise ValueError(
                f"loss_fn: expected per-row losses of shape {tuple(labels.shape)}, got {tuple(per_row.shape)}"
            )
        valid = (labels >= 0).to(per_row.dtype)
        return self.loss_weight * (per_row * valid).sum() / valid.sum().clamp(min=1.0)

    # ---- adaptation -------------------------------------------------------------------------
    @torch.no_grad()
    def accumulate_adaptation_loss(
        self,
        labels: torch.Tensor,
        *,
        logits: torch.Tensor | None = None,
        losses: torch.Tensor | None = None,
    ) -> None:
        """Add per-sample classification losses of the adaptation pass to their classes.

        Give either ``logits [M, C(+1)]`` (softmax cross-entropy is taken) or per-sample
        ``losses [M]``. Labels outside ``[0, C)`` are skipped.
        """
        if labels.dtype not in (torch.int64, torch.int32):
            raise TypeError(f"labels: expected int64 or int32 class indices, got {labels.dtype}")
        if (logits is None) == (losses is None):
            raise ValueError("give exactly one of logits= or losses=")
        if logits is not None:
            if (
                logits.dim() != 2
                or logits.shape[0] != labels.shape[0]
                or logits.shape[1] < self.num_classes
            ):
                raise ValueError(
                    f"logits: expected [{labels.shape[0]}, >= {self.num_classes}], got {tuple(logits.shape)}"
                )
            losses = F.cross_entropy(
                logits.float(), labels.long().clamp(0, logits.shape[1] - 1), reduction="none"
            )
        elif losses.shape != labels.shape:
            raise ValueError(
                f"losses: expected shape {tuple(labels.shape)} (as labels), got {tuple(losses.shape)}"
            )
        labels = labels.long()
        valid = (labels >= 0) & (labels < self.num_classes)
        index = torch.where(valid, labels, torch.zeros_like(labels))
        self.loss_sum.index_add_(0, index, torch.where(valid, losses.double(), 0.0))
        self.loss_count.index_add_(0, index, valid.double())

    @torch.no_grad()
    def adapt(self) -> dict[str, Any]:
        """Group the classes and step each group's probabilities from its loss trend.

        For every group, the mean loss of the group's classes that have adaptation data now and
        had it at the previous adaptation is compared with their previous mean: lower → every
        class of the group (with or without data) gets ``p *= alpha``, higher → ``p *= beta``,
        then clamp to [0, 1]. Groups without such classes, and never-seen classes (group -1),
        keep their probabilities. The first adaptation only records the losses. Resets the
        accumulators. Returns a summary (host values; adaptation runs once per epoch).
        """
        valid = self.loss_count > 0
        class_loss = torch.where(valid, self.loss_sum / self.loss_count.clamp(min=1), 0.0)
        groups = group_classes(
            self.mean, self.std, self.seen, self.grouping, seed=self.seed, **self.grouping_params
        )
        self.groups.copy_(groups.to(self.groups.device))
        summary: dict[str, Any] = {
            "adaptation": self.num_adaptations,
            "num_groups": int(groups.max().item()) + 1 if (groups >= 0).any() else 0,
            "classes_with_data": int(valid.sum().item()),
            "raised": 0,
            "lowered": 0,
        }
        if self.num_adaptations > 0:
            comparable = (valid & self.prev_class_valid).cpu()
            cur, prev = class_loss.cpu(), self.prev_class_loss.cpu()
            factor = torch.ones(self.num_classes, dtype=torch.float64)
            for g in range(summary["num_groups"]):
                members = groups == g
                both = members & comparable
                if not both.any():
                    continue
                now, before = cur[both].mean(), prev[both].mean()
                if now < before:
                    factor[members] = self.alpha
                    summary["raised"] += 1
                elif now > before:
                    factor[members] = self.beta
                    summary["lowered"] += 1
            new_prob = (self.prob.double() * factor.to(self.prob.device)).clamp(0.0, 1.0)
            self.prob.copy_(new_prob.float())
        self.prev_class_loss.copy_(class_loss)
        self.prev_class_valid.copy_(valid)
        self.loss_sum.zero_()
        self.loss_count.zero_()
        self.num_adaptations += 1
        return summary
