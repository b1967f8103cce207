"""Evaluation glue (LVIS under the numpy shim, COCO-LT bins) and the train / test entry points."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from mmengine.hooks import Hook

import fasa_fast.mmdet  # noqa: F401  (registers the metrics)
from tests.mmdet.helpers import load_tool, probed_runners

REPO = Path(__file__).resolve().parents[2]


def coco_lt_files(tmp_path):
    """Three classes with 5, 50 and 500 training instances; one val image per class."""
    cats = [{"id": i, "name": n} for i, n in ((1, "tail"), (2, "body"), (3, "head"))]
    train = {
        "categories": cats,
        "images": [],
        "annotations": [
            {"category_id": c} for c, n in ((1, 5), (2, 50), (3, 500)) for _ in range(n)
        ],
    }
    boxes = {1: [10.0, 10.0, 20.0, 20.0], 2: [5.0, 30.0, 25.0, 15.0], 3: [40.0, 5.0, 10.0, 30.0]}
    val = {
        "categories": cats,
        "images": [
            {"id": i, "width": 64, "height": 64, "file_name": f"{i}.jpg"} for i in (1, 2, 3)
        ],
        "annotations": [
            {
                "id": i,
                "image_id": i,
                "category_id": i,
                "bbox": boxes[i],
                "area": boxes[i][2] * boxes[i][3],
                "iscrowd": 0,
            }
            for i in (1, 2, 3)
        ],
    }
    (tmp_path / "train.json").write_text(json.dumps(train))
    (tmp_path / "val.json").write_text(json.dumps(val))
    return tmp_path / "train.json", tmp_path / "val.json", boxes


def test_coco_lt_bins(tmp_path):
    from fasa_fast.mmdet.metrics import FASACocoLTMetric

    train, val, boxes = coco_lt_files(tmp_path)
    metric = FASACocoLTMetric(ann_file=str(val), train_ann_file=str(train), metric=["bbox"])
    metric.dataset_meta = {"classes": ("tail", "body", "head")}
    results = []
    for image_id, box in boxes.items():
        x, y, w, h = box
        if image_id == 1:  # the tail class is missed: its box is predicted far off
            x, y = x + 30, y + 30
        prediction = {
            "img_id": image_id,
            "bboxes": np.array([[x, y, x + w, y + h]]),
            "scores": np.array([0.9]),
            "labels": np.array([image_id - 1]),
        }
        results.append(({}, prediction))
    out = metric.compute_metrics(results)
    assert out["bbox_AP[1,20)"] == 0.0  # 5 training instances: missed
    assert out["bbox_AP[20,400)"] == 1.0  # 50: found
    assert out["bbox_AP[400,8000)"] == 1.0  # 500: found
    assert "bbox_AP[8000,inf)" not in out  # no class that frequent


class ResumeProbe(Hook):
    """Records where a run starts (epoch, iteration, FASA state) and its adaptations."""

    priority = "LOWEST"  # after FASAHook in after_train_epoch

    def __init__(self) -> None:
        self.start = None
        self.adaptations = []  # (epoch just finished, num_adaptations) per trained epoch

    def before_train(self, runner) -> None:  # mmengine resumes before this hook point
        fasa = runner.model.roi_head.bbox_head.fasa
        state = {k: v.clone() if torch.is_tensor(v) else v for k, v in fasa.state_dict().items()}
        self.start = (runner.epoch, runner.iter, state)

    def after_train_epoch(self, runner) -> None:
        fasa = runner.model.roi_head.bbox_head.fasa
        self.adaptations.append((runner.epoch + 1, fasa.num_adaptations))


def lvis_results_of(gt_path, detections_path, iou_type):
    """AP, APr, APc, APf of a detections file, by the lvis-api directly."""
    from lvis import LVIS, LVISEval, LVISResults

    from fasa_fast.mmdet.lvis_compat import install_lvis_numpy_compat

    gt = LVIS(gt_path)
    evaluator = LVISEval(gt, LVISResults(gt, detections_path), iou_type)
    install_lvis_numpy_compat()
    evaluator.run()
    return evaluator.get_results()


def test_train_resume_and_test_tools(tmp_path, monkeypatch):
    from fasa_fast.mmdet.toy_lvis import make_toy_lvis

    root = tmp_path / "toy"
    make_toy_lvis(root, num_train=40, num_val=8)
    train, test = load_tool("train"), load_tool("test")
    probes = probed_runners(monkeypatch, train, ResumeProbe)
    config = str(REPO / "configs" / "demo" / "mask-rcnn_r18_fpn_toy-lvis_fasa.py")
    data = str(root) + "/"
    overrides = [
        f"train_dataloader.dataset.dataset.data_root={data}",
        f"val_dataloader.dataset.data_root={data}",
        f"test_dataloader.dataset.data_root={data}",
        f"val_evaluator.ann_file={data}annotations/lvis_v1_val.json",
        f"test_evaluator.ann_file={data}annotations/lvis_v1_val.json",
        f"model.roi_head.bbox_head.fasa.data_root={data}",
        "train_cfg.val_interval=100",
        "log_level=WARNING",
    ]
    work = tmp_path / "work"
    train.main(
        [config, "--work-dir", str(work), "--cfg-options", "train_cfg.max_epochs=1", *overrides]
    )
    assert (work / "epoch_1.pth").is_file()
    assert probes[0].adaptations == [(1, 0)]  # the demo's first epoch is FASA's warm-up
    train.main(
        [
            config,
            "--work-dir",
            str(work),
            "--resume",
            "--cfg-options",
            "train_cfg.max_epochs=2",
            *overrides,
        ]
    )
    assert (work / "epoch_2.pth").is_file()

    # the second run started where the checkpoint ended, with the checkpoint's FASA state
    checkpoint = torch.load(work / "epoch_1.pth", map_location="cpu", weights_only=False)
    epoch, it, state = probes[1].start
    expected_start = (checkpoint["meta"]["epoch"], checkpoint["meta"]["iter"])
    assert expected_start[0] == 1 and expected_start[1] > 0, expected_start
    assert (epoch, it) == expected_start, (
        f"resumed run start (epoch, iter): expected {expected_start}, got {(epoch, it)}"
    )
    prefix = "roi_head.bbox_head.fasa."
    saved = {
        k[len(prefix) :]: v for k, v in checkpoint["state_dict"].items() if k.startswith(prefix)
    }
    assert set(state) == set(saved) and "_extra_state" in saved
    assert saved["seen"].sum() > 0  # the warm-up epoch gathered statistics: not a fresh state
    for key, value in saved.items():
        same = torch.equal(state[key], value) if torch.is_tensor(value) else state[key] == value
        assert same, f"FASA {key} after resume: expected the checkpoint's {value}, got {state[key]}"
    # ... then trained epoch 2 only, and adapted after it (the first adaptation records)
    assert probes[1].adaptations == [(2, 1)], (
        f"resumed run (epoch, adaptations): expected [(2, 1)], got {probes[1].adaptations}"
    )

    val = f"{data}annotations/lvis_v1_val.json"
    prefix = str(tmp_path / "dets")
    metrics = test.main(
        [
            config,
            str(work / "epoch_2.pth"),
            "--work-dir",
            str(work),
            "--cfg-options",
            *overrides,
            f"test_evaluator.outfile_prefix={prefix}",
        ]
    )
    # the reported numbers are the lvis-api's evaluation of the predictions the tool wrote
    for iou_type in ("bbox", "segm"):
        expected = lvis_results_of(val, f"{prefix}.{iou_type}.json", iou_type)
        for name in ("AP", "APr", "APc", "APf"):
            key = f"lvis/{iou_type}_{name}"
            assert metrics[key] == pytest.approx(expected[name], abs=5e-4 + 1e-9), (
                f"{key}: expected {expected[name]}, got {metrics[key]}"
            )
        assert 0.0 <= metrics[f"lvis/{iou_type}_AP"] <= 1.0


@pytest.mark.parametrize("argv", [["--resume"], ["--resume", "x.pth"], []])
def test_train_arguments(argv):
    train = load_tool("train")
    args = train.parse_args(
        [str(REPO / "configs" / "demo" / "mask-rcnn_r18_fpn_toy-lvis_fasa.py"), *argv]
    )
    cfg = train.build_config(args)
    assert cfg.get("resume", False) == bool(argv)
    if argv[1:]:
        assert cfg.load_from == "x.pth"


def lvis_eval_of(tmp_path, detections):
    from lvis import LVIS, LVISEval, LVISResults

    from fasa_fast.mmdet.lvis_compat import install_lvis_numpy_compat
    from tests.lvis_files import tiny_lvis

    gt_path, _ = tiny_lvis(tmp_path)
    gt = LVIS(gt_path)
    evaluator = LVISEval(gt, LVISResults(gt, detections, max_dets=-1), "bbox")
    evaluator.params.max_dets = -1
    install_lvis_numpy_compat()
    evaluator.run()
    return evaluator


def far_false_positive(score: float) -> dict:
    """A class-2 detection on image 2 far from its ground-truth box (of ``tiny_lvis``)."""
    return {"image_id": 2, "category_id": 2, "bbox": [50.0, 50.0, 8.0, 8.0], "score": score}


def scored_results(perfect) -> dict:
    """Per-image results: class 1 found (0.9); class 2 found (0.5) and a false positive (0.95)."""
    return {
        1: [dict(perfect[0], score=0.9)],
        2: [dict(perfect[1], score=0.5), far_false_positive(0.95)],
    }


def test_pooled_ap_hand_computed(tmp_path):
    from fasa_fast.mmdet.metrics import pooled_ap
    from tests.lvis_files import tiny_lvis

    _, perfect = tiny_lvis(tmp_path)  # one exact box per image: class 1 on image 1, class 2 on 2
    assert pooled_ap(lvis_eval_of(tmp_path, perfect)) == pytest.approx(1.0)
    # class 2 also fires on image 2 far from anything, with the highest score of all: pooled
    # ranking FP (0.95), TP (0.9), TP (0.5): precision 2/3 at every recall level.
    scored = [dict(perfect[0], score=0.9), dict(perfect[1], score=0.5)]
    evaluator = lvis_eval_of(tmp_path, [*scored, far_false_positive(0.95)])
    assert pooled_ap(evaluator) == pytest.approx(2 / 3, abs=1e-9)
    assert evaluator.results["AP"] == pytest.approx((1.0 + 0.5) / 2, abs=1e-9)  # per-class mean


def test_fixed_ap_metric_reports_pooled_ap(tmp_path):
    from fasa_fast.mmdet.metrics import FASALVISFixedAPMetric
    from tests.lvis_files import tiny_lvis

    gt_path, perfect = tiny_lvis(tmp_path)
    metric = FASALVISFixedAPMetric(ann_file=gt_path, pooled=True)
    results = scored_results(perfect)
    metrics = metric.compute_metrics(results)
    assert metrics["APpool"] == pytest.approx(2 / 3, abs=1e-9)
    assert metrics["AP"] == pytest.approx(0.75, abs=1e-9)


def test_fixed_ap_metric_keeps_the_top_k_of_each_class_and_is_unpooled_by_default(tmp_path):
    from fasa_fast.mmdet.metrics import FASALVISFixedAPMetric
    from tests.lvis_files import tiny_lvis

    gt_path, perfect = tiny_lvis(tmp_path)
    results = scored_results(perfect)
    # top-1 per class: class 2 keeps its highest-scored detection, the false positive: AP 0
    top1 = FASALVISFixedAPMetric(gt_path, pooled=True, topk=1)  # ann_file given positionally
    assert top1.compute_metrics(results)["AP"] == pytest.approx(0.5, abs=1e-9)
    plain = FASALVISFixedAPMetric(ann_file=gt_path)
    assert plain.pooled is False
    metrics = plain.compute_metrics(results)
    assert "APpool" not in metrics and metrics["AP"] == pytest.approx(0.75, abs=1e-9)


def test_pooled_ap_follows_the_precision_envelope_over_recall(tmp_path):
    # pooled ranking TP (0.9), FP (0.8), TP (0.5) over 2 ground-truth boxes: precision 1 up to
    # recall 1/2, then 2/3; LVIS AP reads it at the 101 recall points 0, 0.01, ..., 1
    from fasa_fast.mmdet.metrics import pooled_ap
    from tests.lvis_files import tiny_lvis

    _, perfect = tiny_lvis(tmp_path)
    detections = [dict(perfect[0], score=0.9), far_false_positive(0.8), dict(perfect[1], score=0.5)]
    expected = (51 * 1.0 + 50 * (2 / 3)) / 101
    assert pooled_ap(lvis_eval_of(tmp_path, detections)) == pytest.approx(expected, abs=1e-9)


def test_pooled_ap_of_a_single_ground_truth_box(tmp_path):
    from lvis import LVIS, LVISEval, LVISResults

    from fasa_fast.mmdet.metrics import pooled_ap
    from tests.lvis_files import tiny_lvis

    gt_path, perfect = tiny_lvis(tmp_path)
    gt = LVIS(gt_path)
    evaluator = LVISEval(gt, LVISResults(gt, [dict(perfect[0], score=0.9)], max_dets=-1), "bbox")
    evaluator.params.img_ids = [1]  # one image, one box
    evaluator.params.max_dets = -1
    evaluator.run()
    assert pooled_ap(evaluator) == pytest.approx(1.0)
