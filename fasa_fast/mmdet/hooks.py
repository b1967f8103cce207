"""``FASAHook``: the epoch-level part of FASA in an mmengine training loop.

- before each training epoch: tells every FASA box head which epoch starts (warm-up);
- after each training epoch past the warm-up: an adaptation pass over ``adapt_dataloader``
  (the same images every pass: at most ``max_images`` of them over all ranks), per-class classification losses of the ground-truth boxes
  (each FASA stage's ``cls_score`` on the GT boxes as RoIs, the head's stateless loss),
  reduced across ranks, then ``FASA.adapt()``;
- logs each adaptation (groups, the largest group's share, singletons, groups raised / lowered)
  and, as a warning, when one group holds (nearly) every class (the adaptation is then global);
- logs the mean sampling probability per frequency group (LVIS rare / common / frequent) and
  keeps their history in the message hub (so it survives a resume);
- after training: ``fasa_probabilities.png`` (probabilities over epochs per group, like the
  paper's Fig. 3) and ``fasa_weight_norms.png`` (the classifier's per-class weight norms by class
  frequency, like Fig. 4) in the work dir.
"""

from __future__ import annotations

import os.path as osp
import warnings
from typing import Any

import torch
from mmdet.registry import HOOKS
from mmdet.structures.bbox import bbox2roi
from mmengine.dist import all_reduce, get_rank, get_world_size, is_distributed
from mmengine.hooks import CheckpointHook, Hook
from mmengine.model import is_model_wrapper
from mmengine.runner import EpochBasedTrainLoop

from fasa_fast import reporting
from fasa_fast.engine import FASAGroupingWarning
from fasa_fast.mmdet.bbox_heads import FASABBoxHeadMixin
from fasa_fast.mmdet.loops import (
    ResumableEpochBasedTrainLoop,
    iterations_into_epoch,
    restore_rng_states,
    rng_states,
)


def fasa_stages(model) -> list[tuple[int | None, FASABBoxHeadMixin]]:
    """(stage index or None for a single-stage RoI head, head) of every FASA box head."""
    roi_head = getattr(model, "roi_head", None)
    heads = getattr(roi_head, "bbox_head", None)
    if isinstance(heads, torch.nn.ModuleList):
        return [(i, h) for i, h in enumerate(heads) if isinstance(h, FASABBoxHeadMixin)]
    return [(None, heads)] if isinstance(heads, FASABBoxHeadMixin) else []


def roi_cls_scores(roi_head, stage: int | None, x, rois: torch.Tensor) -> torch.Tensor:
    """Classification scores of one RoI head stage on given RoIs (the adaptation pass scores
    the ground-truth boxes themselves, not proposals).

    mmdet 3.x has no public call for this: ``predict_bbox`` runs post-processing and NMS, and
    ``loss`` samples RoIs. The private ``_bbox_forward`` (``StandardRoIHead._bbox_forward(x,
    rois)``, ``CascadeRoIHead._bbox_forward(stage, x, rois)``, both returning a dict with
    ``cls_score``; unchanged from mmdet 3.0 to 3.3) is the step that maps RoIs to scores, so it
    is called here and only here: a future mmdet that renames it breaks this one function.
    """
    if stage is None:
        return roi_head._bbox_forward(x, rois)["cls_score"]
    return roi_head._bbox_forward(stage, x, rois)["cls_score"]


def _pipeline_loads_boxes(dataset: Any) -> bool:
    """Whether a dataset config (possibly wrapped) has a pipeline loading box annotations.

    Only config dicts are inspected; anything else is checked on its first sample at the start
    of training.
    """
    while isinstance(dataset, dict):
        pipeline = dataset.get("pipeline")
        if pipeline is not None:
            return any(
                isinstance(t, dict)
                and t.get("type") == "LoadAnnotations"
                and t.get("with_bbox", True)
                for t in pipeline
            )
        dataset = dataset.get("dataset")
    return True


@HOOKS.register_module()
class FASAHook(Hook):
    """Drives FASA's warm-up and per-epoch adaptation; see the module docstring.

    Args:
        adapt_dataloader: dataloader config of the adaptation set; its pipeline must load the
            annotations (boxes and labels). Default: the ``split='adapt'`` side of the
            ``FASAHeldOutSplit`` that wraps the training set (found in ``train_dataloader``),
            without augmentation. Its sampler is a ``FASAAdaptationSampler`` (a
            ``DefaultSampler`` given here is replaced by one).
        adapt_scale: image scale of the default adaptation pipeline.
        max_images: images per adaptation pass at most, over all ranks together (its cost counts
            toward FASA's overhead); None reads the whole adaptation set. A smaller number reads a
            fixed seeded sample spread over the whole set, the same images every pass.
        seed: seed of that sample.
        plot: write the two PNGs at the end of training.
    """

    priority = "LOW"

    def __init__(
        self,
        adapt_dataloader: dict | None = None,
        adapt_scale: tuple[int, int] = (1333, 800),
        max_images: int | None = None,
        seed: int = 0,
        plot: bool = True,
    ) -> None:
        if adapt_dataloader is not None and not _pipeline_loads_boxes(
            adapt_dataloader.get("dataset")
        ):
            raise ValueError(
                "FASAHook: the adaptation set yields no ground-truth labels; its pipeline must "
                "contain LoadAnnotations(with_bbox=True) and PackDetInputs"
            )
        self.adapt_dataloader_cfg = adapt_dataloader
        self.adapt_scale = tuple(adapt_scale)
        if max_images is not None and max_images < 1:
            raise ValueError(f"FASAHook: max_images: expected >= 1 or None, got {max_images}")
        self.max_images, self.seed = max_images, seed
        self.plot = plot
        self._rng_states_to_save: list | None = None  # every rank's, for the next checkpoint

    def default_adapt_dataloader(self, runner) -> dict:
        """The held-out side of the FASAHeldOutSplit wrapping the training set."""
        loader = runner.cfg.get("train_dataloader", {})
        dataset = loader.get("dataset")
        while isinstance(dataset, dict) and dataset.get("type") != "FASAHeldOutSplit":
            dataset = dataset.get("dataset")
        if not isinstance(dataset, dict):
            raise ValueError(
                "FASAHook: no adapt_dataloader given and the training set is not wrapped in a "
                "FASAHeldOutSplit: configure one of the two"
            )
        pipeline = [
            dict(type="LoadImageFromFile"),
            dict(type="LoadAnnotations", with_bbox=True),
            dict(type="Resize", scale=self.adapt_scale, keep_ratio=True),
            dict(type="PackDetInputs"),
        ]
        return dict(
            batch_size=loader.get("batch_size", 2),
            num_workers=loader.get("num_workers", 0),
            dataset=dict(dataset, split="adapt", pipeline=pipeline),
        )

    def with_adaptation_sampler(self, loader: dict) -> dict:
        """The loader config with the hook's ``FASAAdaptationSampler`` (see ``max_images``)."""
        sampler = dict(loader.get("sampler") or {})
        kind = sampler.get("type", "DefaultSampler")
        if kind == "DefaultSampler":
            sampler = dict(
                type="FASAAdaptationSampler", num_samples=self.max_images, seed=self.seed
            )
        elif kind != "FASAAdaptationSampler":
            raise ValueError(
                "FASAHook: adapt_dataloader.sampler: expected FASAAdaptationSampler or "
                f"DefaultSampler (replaced by one), got {kind!r}"
            )
        return dict(loader, sampler=sampler)

    def _model(self, runner):
        return runner.model.module if is_model_wrapper(runner.model) else runner.model

    def before_train(self, runner) -> None:
        if getattr(runner.model, "broadcast_buffers", False):
            # DDP would copy rank 0's buffers, FASA's per-rank stream key among them, to every
            # rank before each forward: all ranks would draw the same virtual features
            raise RuntimeError(
                "FASAHook: the model wrapper broadcasts buffers (DDP broadcast_buffers=True), "
                "which would give every rank rank 0's stream of virtual draws; set "
                "model_wrapper_cfg=dict(type='MMDistributedDataParallel', "
                "broadcast_buffers=False) (mmengine's default)"
            )
        loop = runner.train_loop
        if (
            isinstance(loop, EpochBasedTrainLoop)
            and not isinstance(loop, ResumableEpochBasedTrainLoop)
            and iterations_into_epoch(loop) > 0
        ):
            runner.logger.warning(
                f"FASAHook: resuming at iteration {loop.iter}, {iterations_into_epoch(loop)} "
                f"batches into epoch {loop.epoch + 1}, with {type(loop).__name__}, which restarts "
                "the epoch from its first batch: those batches are trained again and FASA folds "
                "their features into its statistics twice. Set train_cfg=dict("
                "type='ResumableEpochBasedTrainLoop') (fasa_fast.mmdet) to continue after them"
            )
        self.stages = fasa_stages(self._model(runner))
        if not self.stages:
            raise RuntimeError(
                "FASAHook: the model has no FASA box head (type='FASAShared2FCBBoxHead', ...)"
            )
        # the run's seed (where the config sets one: a resumed run keeps its stream), the rank
        # and the stage pick each copy's stream of virtual draws; the counter stays shared
        run_seed = (runner.cfg.get("randomness") or {}).get("seed") or 0
        for stage, head in self.stages:
            head.fasa_hooked = True
            head.fasa.set_stream(run_seed=run_seed, rank=runner.rank, stage=stage or 0)
        cfg = self.adapt_dataloader_cfg or self.default_adapt_dataloader(runner)
        self.adapt_loader = runner.build_dataloader(self.with_adaptation_sampler(cfg))
        sample = self.adapt_loader.dataset[0]
        instances = getattr(sample.get("data_samples"), "gt_instances", None)
        if instances is None or "labels" not in instances:
            raise ValueError(
                "FASAHook: the adaptation set yields no ground-truth labels; its pipeline must "
                "contain LoadAnnotations(with_bbox=True) and PackDetInputs"
            )

    def before_train_epoch(self, runner) -> None:
        for _, head in self.stages:
            head.fasa.start_epoch(runner.epoch)

    @torch.no_grad()
    def _adaptation_pass(self, runner) -> int:
        model = self._model(runner)
        was_training = model.training
        model.eval()
        images = 0
        try:
            for data in self.adapt_loader:
                data = model.data_preprocessor(data, False)
                samples = data["data_samples"]
                x = model.extract_feat(data["inputs"])
                rois = bbox2roi([s.gt_instances.bboxes for s in samples])
                labels = torch.cat([s.gt_instances.labels for s in samples])
                for stage, head in self.stages:
                    cls_score = roi_cls_scores(model.roi_head, stage, x, rois)
                    head.fasa.accumulate_adaptation_loss(
                        labels, losses=head.fasa_per_row_loss(cls_score, labels)
                    )
                images += len(samples)
        finally:
            model.train(was_training)
        return images

    def after_train_epoch(self, runner) -> None:
        epoch = runner.epoch + 1  # 1-based number of the epoch that just finished
        record: dict[str, Any] = {"epoch": epoch}
        if any(head.fasa.augmenting for _, head in self.stages):
            images = torch.tensor(self._adaptation_pass(runner))
            if is_distributed():
                all_reduce(images, op="sum")  # the log reports the pass over all ranks
            for stage, head in self.stages:
                head.fasa.reduce_adaptation_losses()  # summed over ranks
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always", FASAGroupingWarning)
                    summary = head.fasa.adapt()
                name = "fasa" if stage is None else f"fasa.s{stage}"
                runner.logger.info(
                    f"{name}: adaptation {summary['adaptation']} on {int(images)} images: "
                    f"{summary['num_groups']} groups (largest "
                    f"{summary['largest_group_share']:.0%} of the classes, "
                    f"{summary['singletons']} singletons), {summary['raised']} raised, "
                    f"{summary['lowered']} lowered, {summary['moved']} classes moved"
                )
                for warning in caught:  # the engine's warning, in the run's log
                    if issubclass(warning.category, FASAGroupingWarning):
                        runner.logger.warning(f"{name}: {warning.message}")
                    else:
                        warnings.warn_explicit(
                            warning.message, warning.category, warning.filename, warning.lineno
                        )
                grouping = runner.message_hub.get_info("fasa_grouping_history", [])
                grouping = grouping + [dict(epoch=epoch, head=name, **summary)]
                runner.message_hub.update_info("fasa_grouping_history", grouping)
                if summary["classes_with_data"] == 0:
                    runner.logger.warning(
                        f"{name}: the adaptation pass found no ground-truth box of any class: "
                        "the probabilities stay as they are; check the adaptation set's "
                        "annotations (FASAHook adapt_dataloader / FASAHeldOutSplit)"
                    )
        for stage, head in self.stages:
            nonfinite, overflow = head.fasa.skipped_rows.tolist()  # once per epoch: host read ok
            head.fasa.skipped_rows.zero_()
            if nonfinite or overflow:
                name = "fasa" if stage is None else f"fasa.s{stage}"
                runner.logger.warning(
                    f"{name}: this epoch kept {nonfinite} foreground rows with NaN/Inf features "
                    f"and {overflow} rows beyond sync_capacity out of the statistics"
                )
        scalars = {}
        for stage, head in self.stages:
            prefix = "fasa" if stage is None else f"fasa.s{stage}"
            for group, value in reporting.group_means(
                head.fasa.prob, head.fasa_class_frequency
            ).items():
                scalars[f"{prefix}/p_{group}"] = value
                runner.message_hub.update_scalar(f"train/{prefix}/p_{group}", value)
        record.update(scalars)
        history = runner.message_hub.get_info("fasa_history", []) + [record]
        runner.message_hub.update_info("fasa_history", history)
        runner.visualizer.add_scalars(scalars, step=epoch)
        runner.logger.info(
            "fasa probabilities: " + ", ".join(f"{k}={v:.4g}" for k, v in scalars.items())
        )
        self._gather_rng_states_if_saving(runner, by_epoch=True)

    # ---- the random generators, in checkpoints (fasa_fast/mmdet/loops.py says why) ----------
    # mmengine writes checkpoints from rank 0 alone (Runner.save_checkpoint is master_only), so
    # every rank's generator states are gathered beforehand, in the hook stage just before
    # CheckpointHook's (FASAHook's priority is higher), and only when one of the run's
    # CheckpointHooks is about to save: one all-gather per checkpoint, none per step.
    def _checkpoint_due(self, runner, by_epoch: bool) -> bool:
        for hook in getattr(runner, "hooks", ()):  # a stand-in runner may have none
            if not isinstance(hook, CheckpointHook) or hook.by_epoch != by_epoch:
                continue
            if by_epoch:
                due = hook.every_n_epochs(runner, hook.interval, hook.save_begin) or (
                    hook.save_last and hook.is_last_train_epoch(runner)
                )
            else:
                due = hook.every_n_train_iters(runner, hook.interval, hook.save_begin) or (
                    hook.save_last and hook.is_last_train_iter(runner)
                )
            if due:
                return True
        return False

    def _gather_rng_states_if_saving(self, runner, by_epoch: bool) -> None:
        if is_distributed() and self._checkpoint_due(runner, by_epoch):
            gathered: list = [None] * get_world_size()
            torch.distributed.all_gather_object(gathered, rng_states())
            self._rng_states_to_save = gathered

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        self._gather_rng_states_if_saving(runner, by_epoch=False)

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        if is_distributed():
            gathered, self._rng_states_to_save = self._rng_states_to_save, None
            if gathered is None:
                return  # saved outside CheckpointHook's schedule: no states were gathered
        else:
            gathered = [rng_states()]
        checkpoint["fasa_rng_states"] = gathered

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        gathered = checkpoint.get("fasa_rng_states")
        if gathered is None:
            return  # a checkpoint written without FASAHook's generators
        if len(gathered) != get_world_size():
            runner.logger.warning(
                f"FASAHook: the checkpoint holds the random generators of {len(gathered)} "
                f"processes, this run has {get_world_size()}: they are not restored, so the "
                "resumed run samples RoIs and augmentations differently from the interrupted "
                "one (FASA's own draws follow its saved counter either way)"
            )
            return
        states = gathered[get_rank()]
        loop = runner.train_loop
        if isinstance(loop, ResumableEpochBasedTrainLoop):
            loop.resume_rng_states(states)  # at the point the interrupted run stood
        else:
            restore_rng_states(states)

    def after_train(self, runner) -> None:
        if not self.plot or runner.rank != 0:
            return
        history = runner.message_hub.get_info("fasa_history", [])
        reporting.plot_probability_history(
            history, osp.join(runner.work_dir, "fasa_probabilities.png")
        )
        _, head = self.stages[-1]
        reporting.plot_weight_norms(
            head.fc_cls.weight[: head.num_classes],
            head.fasa.instance_counts,
            osp.join(runner.work_dir, "fasa_weight_norms.png"),
        )
        runner.logger.info(f"fasa plots written to {runner.work_dir}")
