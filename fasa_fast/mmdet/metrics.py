"""Evaluation glue: mmdet's LVIS metrics under the lvis-api numpy shim, and COCO-LT bins.

- LVIS AP, APr, APc, APf: use mmdet's own ``LVISMetric``; ``import fasa_fast.mmdet`` makes PyPI
  ``lvis`` 0.5.3 work on the pinned numpy (``fasa_fast.mmdet.lvis_compat``).
- ``FASALVISFixedAPMetric``: mmdet's ``LVISFixedAPMetric`` (AP^fixed of Dave et al. 2021: no
  per-image cap, the top 10,000 detections per class); with
  ``pooled=True`` it also reports ``APpool``, Dave et al.'s pooled AP: one precision-recall
  curve over the detections of all classes together, which rewards scores calibrated across
  classes.
- ``FASACocoLTMetric``: mmdet's ``CocoMetric`` plus AP by bins of training-instance count, the
  COCO-LT protocol: [1, 20), [20, 400), [400, 8000), [8000, inf), from ``train_ann_file``.
"""

from __future__ import annotations

import math

import numpy as np
from mmdet.evaluation.metrics import CocoMetric
from mmdet.evaluation.metrics.lvis_metric import LVISFixedAPMetric
from mmdet.registry import METRICS

from fasa_fast.annotations import class_counts_from_annotations

COCO_LT_BINS = (1, 20, 400, 8000)


def pooled_ap(lvis_eval) -> float:
    """AP^pool over the area range 'all' of an ``LVISEval`` after ``evaluate()``.

    The per-image, per-class matches of LVIS evaluation are pooled across classes, ranked by
    score, and turned into one precision-recall curve per IoU threshold (interpolated at the
    101 recall points, as LVIS AP is); the mean over IoU thresholds is returned.
    """
    params = lvis_eval.params
    num_imgs, num_areas = len(params.img_ids), len(params.area_rng)
    evals = [
        lvis_eval.eval_imgs[k * num_areas * num_imgs + i]
        for k in range(len(params.cat_ids))
        for i in range(num_imgs)  # area index 0: all areas
    ]
    evals = [e for e in evals if e is not None]
    num_gt = sum(int(np.count_nonzero(e["gt_ignore"] == 0)) for e in evals)
    if not evals or num_gt == 0:
        return float("nan")
    scores = np.concatenate([e["dt_scores"] for e in evals])
    order = np.argsort(-scores, kind="mergesort")
    matched = np.concatenate([e["dt_matches"] for e in evals], axis=1)[:, order] > 0
    ignored = np.concatenate([e["dt_ignore"] for e in evals], axis=1)[:, order] > 0
    tps = np.cumsum(matched & ~ignored, axis=1).astype(np.float64)
    fps = np.cumsum(~matched & ~ignored, axis=1).astype(np.float64)
    aps = []
    for tp, fp in zip(tps, fps, strict=True):
        recall = tp / num_gt
        precision = tp / (tp + fp + np.spacing(1))
        precision = np.maximum.accumulate(precision[::-1])[::-1]  # best precision to the right
        at = np.searchsorted(recall, params.rec_thrs, side="left")
        aps.append(np.mean([precision[i] if i < len(precision) else 0.0 for i in at]))
    return float(np.mean(aps))


@METRICS.register_module()
class FASALVISFixedAPMetric(LVISFixedAPMetric):
    def __init__(self, *args, pooled: bool = False, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.pooled = pooled

    def compute_metrics(self, results: dict) -> dict:
        if not self.pooled:
            return super().compute_metrics(results)
        from lvis import LVISEval, LVISResults

        detections = []
        for anns in results.values():  # AP^fixed: the top-k detections of every class
            detections.extend(sorted(anns, key=lambda a: a["score"], reverse=True)[: self.topk])
        lvis_dt = LVISResults(self._lvis_api, detections, max_dets=-1)
        lvis_eval = LVISEval(self._lvis_api, lvis_dt, iou_type="bbox")
        lvis_eval.params.max_dets = -1
        lvis_eval.run()
        metrics = {k: v for k, v in lvis_eval.results.items() if k.startswith("AP")}
        metrics["APpool"] = pooled_ap(lvis_eval)
        return metrics


@METRICS.register_module()
class FASACocoLTMetric(CocoMetric):
    """``CocoMetric`` with AP per bin of training-instance count (COCO-LT).

    Args:
        train_ann_file: the training annotation file the counts are taken from.
        bins: lower edges of the bins; the last bin is open.
    """

    def __init__(
        self, *args, train_ann_file: str, bins: tuple[int, ...] = COCO_LT_BINS, **kwargs
    ) -> None:
        kwargs["classwise"] = True  # the bins are averages of per-class AP
        super().__init__(*args, **kwargs)
        counts = class_counts_from_annotations(train_ann_file)
        self.train_counts = dict(zip(counts.names, counts.instance_counts.tolist(), strict=True))
        self.bins = tuple(bins)

    def bin_name(self, count: int) -> str | None:
        edges = self.bins + (math.inf,)
        for low, high in zip(edges[:-1], edges[1:], strict=True):
            if low <= count < high:
                return f"[{low},{high})" if high != math.inf else f"[{low},inf)"
        return None

    def compute_metrics(self, results: list) -> dict:
        # CocoMetric keys per-class AP by class name only, so run one metric at a time.
        metrics, eval_results = self.metrics, {}
        try:
            for metric in metrics:
                self.metrics = [metric]
                single = super().compute_metrics(results)
                per_bin: dict[str, list[float]] = {}
                for name, count in self.train_counts.items():
                    ap = single.pop(f"{name}_precision", None)
                    key = self.bin_name(count)
                    if ap is not None and key is not None and not math.isnan(ap):
                        per_bin.setdefault(key, []).append(ap)
                eval_results.update(single)
                for key, values in per_bin.items():
                    eval_results[f"{metric}_AP{key}"] = round(sum(values) / len(values), 3)
        finally:
            self.metrics = metrics
        return eval_results
