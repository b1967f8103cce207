"""The FASA engine: framework-free state and logic of FASA (``docs/method.md`` §1-§4).

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

import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from fasa_fast.annotations import class_counts_from_annotations
from fasa_fast.grouping import DEFAULT_GROUPING, check_grouping, group_classes, group_sizes
from fasa_fast.ops import make_rng_state, sample_virtual_features, segmented_stats_update_

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def initial_probabilities(
    instance_counts: torch.Tensor, scale: float = 1.0, power: float = 1.0
) -> torch.Tensor:
    """Eq. 4: ``p_c = scale * (1/N_c)^power / sum_j (1/N_j)^power``, clamped to [0, 1].

    A class without training instances (``N_c = 0``) gets ``p_c = 0`` and no share of the sum.
    """
    counts = instance_counts.double()
    inverse = torch.where(counts > 0, counts.clamp(min=1).reciprocal().pow(power), 0.0)
    return (
        (scale * inverse / inverse.sum().clamp(min=torch.finfo(torch.float64).tiny))
        .clamp(0.0, 1.0)
        .float()
    )


def _stream_key(seed: int, stream: Sequence[int]) -> int:
    """The Philox key of one stream of draws: ``seed`` itself for the stream ``(0, 0, 0)``,
    otherwise a SplitMix64 hash of the seed and the stream ids (as a signed 64-bit int)."""
    if not any(stream):
        return int(seed)
    mask = (1 << 64) - 1
    key = int(seed) & mask
    for part in stream:
        key = (key ^ (int(part) & mask)) & mask
        key = (key + 0x9E3779B97F4A7C15) & mask  # SplitMix64 step: decorrelates nearby ids
        key = ((key ^ (key >> 30)) * 0xBF58476D1CE4E5B9) & mask
        key = ((key ^ (key >> 27)) * 0x94D049BB133111EB) & mask
        key ^= key >> 31
    return key - (1 << 64) if key >= 1 << 63 else key


ONE_GROUP_MIN_CLASSES = 5  # below this many grouped classes one group is no sign of collapse


class FASAGroupingWarning(UserWarning):
    """``FASA.adapt()`` put (nearly) every class into one group: that adaptation is global."""


class FASA(nn.Module):
    """Feature augmentation and sampling adaptation for a classifier with ``num_classes`` classes.

    Args:
        num_classes: C, foreground classes (labels ``0..C-1``; others are skipped).
        feat_dim: D, the dimension of the classifier's input features.
        instance_counts: ``[C]`` training instances per class, for Eq. 4. A class with none
            gets probability 0 (never drawn) and a warning naming it.
        momentum: running-statistics momentum (paper: 0.1).
        momentum_on_var: average the variance, as the public reference code does.
        loss_weight: weight of the virtual-feature loss (paper: 0.1).
        k: virtual features per selected class.
        capacity: rows reserved for virtual features per step (fixed shape); classes beyond it
            are dropped fairly (see ``sample_virtual_features``).
        init_scale, power: ``s`` and the power of Eq. 4.
        alpha, beta: probability multipliers when a group's loss fell / rose (1.1 / 0.9).
        warmup_epochs: epochs with statistics only, before virtual features and adaptation.
        grouping: how classes are grouped for the adaptation (``fasa_fast.grouping``):
            ``"hdbscan"`` (default; HDBSCAN on the Fisher distance), ``"dbscan"`` (the paper's
            rule), ``"affinity"``, or the ablations ``"single"`` (one group) and
            ``"per-class"`` (no grouping).
        grouping_params: keyword arguments of ``fasa_fast.grouping.group_classes`` for that
            method (others are refused here).
        one_group_share: ``adapt()`` warns when its largest group holds at least this share of
            the grouped classes (and there are at least ``ONE_GROUP_MIN_CLASSES`` of them):
            the adaptation then scales (nearly) every probability alike.
        attach_dataless: classes of a group without adaptation data follow the nearest group
            that has data (``group_classes(has_data=...)``) instead of holding still.
        sync_statistics: under ``torch.distributed`` with several ranks, every rank folds in
            the foreground rows of all ranks (one all-gather per step), so the statistics, and
            from them the groups and probabilities, are the same on every rank. False: each
            rank keeps statistics of its own rows (the public reference code's behaviour).
        sync_capacity: foreground rows a rank contributes per step at most (a fixed size keeps
            the step free of host syncs); rows beyond it are counted in ``skipped_rows[1]``.
        seed: seed of the virtual-feature draws (see ``set_stream`` for ranks, stages, runs).
        class_names: a display name per class for messages (e.g. ``"'aerosol_can' (id 1)"``).
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
        grouping: str = DEFAULT_GROUPING,
        grouping_params: dict[str, Any] | None = None,
        one_group_share: float = 0.9,
        attach_dataless: bool = True,
        sync_statistics: bool = True,
        sync_capacity: int = 512,
        seed: int = 0,
        class_names: Sequence[str] | None = None,
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
        if class_names is not None and len(class_names) != num_classes:
            raise ValueError(
                f"class_names: expected one name per class ({num_classes}), got {len(class_names)}"
            )
        self.class_names = tuple(class_names) if class_names is not None else None
        if (counts < 0).any():
            raise ValueError(
                f"instance_counts: expected counts >= 0, got negative counts for "
                f"{self.describe_classes(torch.nonzero(counts < 0).flatten().tolist())}"
            )
        if (counts == 0).all():
            raise ValueError("instance_counts: every class has 0 training instances")
        if (counts == 0).any():
            empty = torch.nonzero(counts == 0).flatten().tolist()
            warnings.warn(
                f"FASA: {len(empty)} classes have no training instance; their sampling "
                f"probability is 0, they are never drawn: {self.describe_classes(empty)}",
                stacklevel=2,
            )
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"momentum: expected a value in [0, 1], got {momentum}")
        check_grouping(grouping, dict(grouping_params or {}))
        if not 0.0 < one_group_share <= 1.0:
            raise ValueError(f"one_group_share: expected a value in (0, 1], got {one_group_share}")
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
        self.one_group_share = float(one_group_share)
        self.attach_dataless = bool(attach_dataless)
        if sync_capacity < 1:
            raise ValueError(f"sync_capacity: expected >= 1, got {sync_capacity}")
        self.sync_statistics, self.sync_capacity = bool(sync_statistics), int(sync_capacity)
        self.seed = int(seed)

        self.register_buffer("instance_counts", counts.long().clone())
        self.register_buffer("mean", torch.zeros(num_classes, feat_dim))
        self.register_buffer("std", torch.zeros(num_classes, feat_dim))
        self.register_buffer("seen", torch.zeros(num_classes, dtype=torch.long))
        self.register_buffer("prob", initial_probabilities(counts, init_scale, power))
        self.register_buffer("rng_state", make_rng_state(seed))
        # the Philox key the op draws with (set_stream): derived, not state; the op advances
        # rng_state's counter in place, so only [seed, counter] is checkpointed
        self.register_buffer("_draw_key", make_rng_state(seed)[:1].clone(), persistent=False)
        self.stream = (0, 0, 0)
        # adaptation: this pass's accumulators and the previous adaptation's per-class losses
        self.register_buffer("loss_sum", torch.zeros(num_classes, dtype=torch.float64))
        self.register_buffer("loss_count", torch.zeros(num_classes, dtype=torch.float64))
        self.register_buffer("prev_class_loss", torch.zeros(num_classes, dtype=torch.float64))
        self.register_buffer("prev_class_valid", torch.zeros(num_classes, dtype=torch.bool))
        self.register_buffer("groups", torch.full((num_classes,), -1, dtype=torch.long))
        # rows kept out of the statistics, counted on the device (the hook reads and resets it
        # once per epoch; a diagnostic, not state):
        # [non-finite feature rows, foreground rows beyond sync_capacity]
        self.register_buffer("skipped_rows", torch.zeros(2, dtype=torch.long), persistent=False)
        self.epoch = 0  # host-side counters (extra state): never read from the device
        self.num_adaptations = 0

    @classmethod
    def from_annotation_file(cls, path: str | Path, feat_dim: int, **kwargs: Any) -> FASA:
        """Build from an LVIS (``instance_count``) or COCO-style (counted) annotation file."""
        counts = class_counts_from_annotations(path)
        kwargs.setdefault("class_names", counts.display_names())
        return cls(counts.num_classes, feat_dim, counts.instance_counts, **kwargs)

    def describe_classes(self, indices: Sequence[int], limit: int = 10) -> str:
        """``"'name' (id 3), ..."`` for messages: the same wording wherever a class is named."""
        names = [
            self.class_names[i] if self.class_names is not None else f"class {i}"
            for i in list(indices)[:limit]
        ]
        more = f" and {len(indices) - limit} more" if len(indices) > limit else ""
        return ", ".join(names) + more

    def set_stream(self, *, run_seed: int = 0, rank: int = 0, stage: int = 0) -> None:
        """Choose this copy's stream of virtual draws: the Philox key becomes a hash of ``seed``
        and ``(run_seed, rank, stage)``, the counter stays the shared one (``rng_state[1]``).

        Ranks of one run draw different virtual features, as do the stages of a cascade and
        runs with different seeds; ``(0, 0, 0)`` is ``seed``'s own stream. The stream is not
        state: the trainer sets it for each process (a checkpoint resumes on any rank).
        """
        self.stream = (int(run_seed), int(rank), int(stage))
        self._draw_key.fill_(_stream_key(self.seed, self.stream))

    # ---- state ------------------------------------------------------------------------------
    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        # torch copies every matching tensor and reports size mismatches only at the end, which
        # would leave e.g. a checkpoint's instance counts in an engine of another feature size:
        # check every shape first, so a mismatched checkpoint changes nothing
        for name, buffer in self._buffers.items():
            key = prefix + name
            if name in self._non_persistent_buffers_set or key not in state_dict:
                continue
            if tuple(state_dict[key].shape) != tuple(buffer.shape):
                raise RuntimeError(
                    f"FASA state: size mismatch for {name}: the checkpoint has "
                    f"{tuple(state_dict[key].shape)}, this engine {tuple(buffer.shape)} "
                    f"(num_classes={self.num_classes}, feat_dim={self.feat_dim}): it was saved "
                    "with another class count or feature dimension"
                )
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        # the checkpoint's seed keys the draws from here on (an engine built with another seed
        # continues the checkpointed stream, not a new one); once per load, so a host read is ok
        self.seed = int(self.rng_state[0])
        self._draw_key.fill_(_stream_key(self.seed, self.stream))

    def get_extra_state(self) -> torch.Tensor:
        # [epoch, num_adaptations] as a CPU tensor, not a dict: mmengine's Runner broadcasts every
        # state_dict value as a tensor when it initialises a distributed run (a dict failed there)
        return torch.tensor([self.epoch, self.num_adaptations], dtype=torch.int64)

    def set_extra_state(self, state: torch.Tensor | dict[str, int]) -> None:
        if isinstance(state, dict):  # checkpoints written before the tensor form
            state = [state["epoch"], state["num_adaptations"]]
        self.epoch, self.num_adaptations = (int(value) for value in state)

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
        if labels.shape != features.shape[:1]:
            raise ValueError(
                f"labels: expected shape ({features.shape[0]},) (one per feature row), got "
                f"{tuple(labels.shape)}"
            )

    def update(self, features: torch.Tensor, labels: torch.Tensor) -> None:
        """Fold one step's classification features into the running class statistics.

        ``labels`` may hold background (``>= C``) and ignored (``< 0``) rows: they are skipped.
        A foreground row holding a NaN or an Inf is skipped too and counted in
        ``skipped_rows[0]`` (inside the op, on the device). One dispatched op on one rank.
        """
        self._check_step_inputs(features, labels)
        if self._distributed():
            features, labels = self._gather_foreground(features.detach(), labels.long())
        segmented_stats_update_(
            features,
            labels,
            self.mean,
            self.std,
            self.seen,
            self.momentum,
            self.momentum_on_var,
            self.skipped_rows[:1],
        )

    def _distributed(self) -> bool:
        return (
            self.sync_statistics
            and torch.distributed.is_available()
            and torch.distributed.is_initialized()
            and torch.distributed.get_world_size() > 1
        )

    def _gather_foreground(
        self, features: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Every rank's foreground rows, in rank order, in fixed-size blocks (``-1`` pads).

        A rank's non-finite rows are counted (``skipped_rows[0]``) and left out here, so that
        each rank counts its own and they take no room in the block."""
        finite = torch.isfinite(features).all(dim=1)
        foreground = (labels >= 0) & (labels < self.num_classes)
        self.skipped_rows[0] += (foreground & ~finite).sum()
        valid = foreground & finite
        rows = self.sync_capacity
        # foreground rows first, in their order (stable); fixed shapes: no host sync
        order = torch.sort(valid.to(torch.uint8), descending=True, stable=True).indices[:rows]
        block = features.new_zeros(rows, features.shape[1])
        block_labels = labels.new_full((rows,), -1)
        block[: order.numel()] = features.index_select(0, order)
        block_labels[: order.numel()] = torch.where(valid[order], labels[order], -1)
        self.skipped_rows[1] += (valid.sum() - rows).clamp(min=0)
        world = torch.distributed.get_world_size()
        gathered = [torch.empty_like(block) for _ in range(world)]
        gathered_labels = [torch.empty_like(block_labels) for _ in range(world)]
        torch.distributed.all_gather(gathered, block.contiguous())
        torch.distributed.all_gather(gathered_labels, block_labels)
        return torch.cat(gathered), torch.cat(gathered_labels)

    def reduce_adaptation_losses(self) -> None:
        """Sum the adaptation accumulators over ``torch.distributed`` ranks (each rank read its
        own share of the adaptation images); a no-op in a single process."""
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(self.loss_sum)
            torch.distributed.all_reduce(self.loss_count)

    def sample(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Draw this step's virtual features: ``(features [capacity, D], labels, counts)``.

        One dispatched op: it draws with the stream's key and advances ``rng_state``'s call
        counter in place."""
        return sample_virtual_features(
            self.mean,
            self.std,
            self.seen,
            self.prob,
            self.rng_state,
            self.k,
            self.capacity,
            key=self._draw_key,
        )

    def virtual_loss(
        self,
        classifier: Callable[[torch.Tensor], torch.Tensor],
        loss_fn: LossFn | None = None,
    ) -> torch.Tensor:
        """``loss_weight`` times the mean classification loss of this step's virtual features.

        ``classifier`` maps ``[M, D]`` features to logits (an ``nn.Linear``, mmdet's
        ``NormedLinear``, any head); ``loss_fn(logits, labels) -> [M]`` per-row losses, stateless
        (default: softmax cross-entropy, computed in float32). Padding rows are left out on the
        device; a step without virtual features (warm-up, or none selected) returns a zero that
        is still connected to the classifier's graph and lives on its device.

        The default loss is one reduction: cross-entropy summed over the rows that are not
        padding (``ignore_index=-1``), divided by the filled-row count the draw returns, so a
        step dispatches the draw, the classifier, the loss and two scalar ops
        (``benchmarks/launch_budget.py`` counts them).
        """
        if not self.augmenting:
            empty = self.mean.new_zeros(0, self.feat_dim)
            return classifier(empty).sum() * 0.0
        features, labels, counts = self.sample()
        logits = classifier(features)
        # reduce in fp32: under fp16 autocast a sum of `capacity` large per-row losses overflows
        if loss_fn is None:
            total = F.cross_entropy(logits.float(), labels, ignore_index=-1, reduction="sum")
        else:
            per_row = loss_fn(logits, labels.clamp(min=0))  # padding rows get label 0 here
            if per_row.shape != labels.shape:
                raise ValueError(
                    f"loss_fn: expected per-row losses of shape {tuple(labels.shape)}, got {tuple(per_row.shape)}"
                )
            total = per_row.float().masked_fill(labels < 0, 0.0).sum()  # NaN-safe, unlike a mul
        # counts[0] is the number of filled (non-padding) rows: the mean over them, 0 for none
        return total / (counts[0].clamp(min=1) / self.loss_weight)

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
        then clamp to [0, 1]. With ``attach_dataless`` (default) the classes of a group without
        such data first join the nearest group that has some; otherwise they keep their
        probabilities. Never-seen classes (group -1) keep theirs. The first adaptation only
        records the losses. Resets the accumulators. Returns a summary (host values; adaptation
        runs once per epoch): groups, the largest group's share of the grouped classes,
        singleton groups, classes with data, groups raised / lowered, and ``moved``, the classes
        whose probability was multiplied. Warns (``FASAGroupingWarning``) when the largest
        group holds at least ``one_group_share`` of the grouped classes.
        """
        valid = self.loss_count > 0
        class_loss = torch.where(valid, self.loss_sum / self.loss_count.clamp(min=1), 0.0)
        comparable = (valid & self.prev_class_valid).cpu()
        groups = group_classes(
            self.mean,
            self.std,
            self.seen,
            self.grouping,
            seed=self.seed,
            has_data=comparable if self.attach_dataless else None,
            **self.grouping_params,
        )
        self.groups.copy_(groups.to(self.groups.device))
        group_ids = groups[groups >= 0].unique().tolist()
        sizes = group_sizes(groups)
        grouped = int(sizes.sum())
        summary: dict[str, Any] = {
            "adaptation": self.num_adaptations,
            "num_groups": len(group_ids),
            "largest_group_share": int(sizes.max()) / grouped if grouped else 0.0,
            "singletons": int((sizes == 1).sum()),
            "classes_with_data": int(valid.sum().item()),
            "raised": 0,
            "lowered": 0,
            "moved": 0,
        }
        if (
            grouped >= ONE_GROUP_MIN_CLASSES
            and summary["largest_group_share"] >= self.one_group_share
            and self.grouping != "single"
        ):
            warnings.warn(
                f"FASA adaptation {self.num_adaptations}: one group holds "
                f"{int(sizes.max())} of the {grouped} grouped classes "
                f"({summary['largest_group_share']:.0%}), so this adaptation scales (nearly) "
                f"every sampling probability alike (grouping={self.grouping!r}). Early in "
                "training the statistics may not separate yet; if it persists, try "
                "grouping='hdbscan' (the default), grouping='per-class', or other "
                "grouping_params; with attach_dataless=True, classes of groups without "
                "adaptation data join the nearest group with data, so a small adaptation set "
                "can also merge groups",
                FASAGroupingWarning,
                stacklevel=2,
            )
        if self.num_adaptations > 0:
            cur, prev = class_loss.cpu(), self.prev_class_loss.cpu()
            factor = torch.ones(self.num_classes, dtype=torch.float64)
            for g in group_ids:
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
            summary["moved"] = int((factor != 1.0).sum())
            new_prob = (self.prob.double() * factor.to(self.prob.device)).clamp(0.0, 1.0)
            self.prob.copy_(new_prob.float())
        self.prev_class_loss.copy_(class_loss)
        self.prev_class_valid.copy_(valid)
        self.loss_sum.zero_()
        self.loss_count.zero_()
        self.num_adaptations += 1
        return summary
