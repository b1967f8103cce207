"""Evaluation glue: mmdet's LVIS metrics under the lvis-api numpy shim, and COCO-LT bins.

- ``FASALVISMetric``: mmdet's ``LVISMetric`` (AP, APr, APc, APf for bbox and segm), run inside
  ``lvis_numpy_compat()`` so that PyPI ``lvis`` 0.5.3 works on the pinned numpy.
- ``FASALVISFixedAPMetric``: mmdet's ``LVISFixedAPMetric`` (AP^fixed of Dave et al. 2021: no
  per-image cap, the top 10,000 detections per class), under the same shim.
- ``FASACocoLTMetric``: mmdet's ``CocoMetric`` plus AP by bins of training-instance count, the
  COCO-LT protocol: [1, 20), [20, 400), [400, 8000), [8000, inf), from ``train_ann_file``.

AP^pool (Dave et al. 2021) is not implemented.
"""

from __future__ import annotations

import math

from mmdet.evaluation.metrics import CocoMetric, LVISMetric
from mmdet.evaluation.metrics.lvis_metric import LVISFixedAPMetric
from mmdet.registry import METRICS

from fasa_fast.annotations import class_counts_from_annotations
from fasa_fast.lvis_compat import lvis_numpy_compat

COCO_LT_BINS = (1, 20, 400, 8000)


@METRICS.register_module()
class FASALVISMetric(LVISMetric):
    def compute_metrics(self, results: list) -> dict:
        with lvis_numpy_compat():
            return super().compute_metrics(results)


@METRICS.register_module()
class FASALVISFixedAPMetric(LVISFixedAPMetric):
    def compute_metrics(self, results: dict) -> dict:
        with lvis_numpy_compat():
            return super().compute_metrics(results)


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
