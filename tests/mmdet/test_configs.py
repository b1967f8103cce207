"""Every shipped config, end to end, the way a user runs it: ``tools/train.py`` (two epochs, so
FASA's warm-up ends and its hook adapts, then the config's own validation), the checkpoint it
saves, then ``tools/test.py`` on that checkpoint, printing LVIS AP / APr / APc / APf.

The data is generated in the config's own layout under its own ``data_root`` (relative, as
shipped: the runs start in a scratch directory): LVIS v1 annotation files with the config's
class count (1203 categories with LVIS v1's names and frequency groups), images named by
``coco_url``, and images without any object in both splits.

The only overrides are for a CPU: ResNet-18 without pretrained weights, 96-pixel images, fewer
sampled RoIs and proposals, fewer detections per image at test time, two epochs, no dataloader
worker processes. Nothing that decides how a config trains its FASA head or evaluates changes:
datasets, samplers, wrappers, hooks and metrics are the config's.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.registry import HOOKS

from fasa_fast.mmdet.toy_lvis import make_toy_lvis
from tests.mmdet.helpers import load_tool

REPO = Path(__file__).resolve().parents[2]
CONFIGS = sorted((REPO / "configs").glob("*/*.py"))
LVIS_CATEGORIES = REPO / "benchmarks" / "data" / "lvis_v1_train_category_stats.json"
SCALE = (96, 96)
EPOCHS = 2


def config_classes(cfg: Config) -> int:
    heads = cfg.model.roi_head.bbox_head
    return (heads[0] if isinstance(heads, list) else heads).num_classes


def make_dataset(root: Path, num_classes: int) -> None:
    """A tiny LVIS v1-format set under ``root``, every class with a training instance."""
    categories = None
    if num_classes == 1203:
        categories = json.loads(LVIS_CATEGORIES.read_text())
    make_toy_lvis(
        root,
        num_classes=num_classes,
        num_train=8,
        num_val=2,
        num_empty=1,
        copies=2,  # every class keeps a training image when one is held out
        image_size=SCALE[0],
        categories=categories,
        seed=0,
    )


def for_cpu(node) -> None:
    """The CPU overrides listed in the module docstring, wherever the config puts them."""
    if isinstance(node, dict):
        kind = node.get("type")
        if kind == "Resize" and "scale" in node:
            node["scale"] = SCALE
        elif kind == "RandomChoiceResize":
            node["scales"] = [SCALE]
        elif kind == "FASAHook":
            node["adapt_scale"] = SCALE
        if "num_workers" in node:
            node.update(num_workers=0, persistent_workers=False)
        for value in node.values():
            for_cpu(value)
    elif isinstance(node, list):
        for item in node:
            for_cpu(item)


def cpu_config(config: Path, out: Path) -> Path:
    cfg = Config.fromfile(str(config))
    model = cfg.model
    model.backbone.update(depth=18, init_cfg=None)
    model.neck.in_channels = [64, 128, 256, 512]
    rcnn = model.train_cfg.rcnn
    for stage in rcnn if isinstance(rcnn, list) else [rcnn]:
        stage.sampler.num = 64
    model.train_cfg.rpn_proposal.max_per_img = 100
    # an untrained head scores nearly every class of every proposal above LVIS's 1e-4 threshold:
    # 8 proposals x 1203 classes stay under mmcv's 10,000-box batched-NMS split, which would
    # otherwise loop over the classes in Python (most of the test's time)
    model.test_cfg.rpn.max_per_img = 8
    model.test_cfg.rcnn.max_per_img = 20
    # ... nearly: an untrained cascade sometimes scored none of them above it, and an empty result
    # has no LVIS metrics to compare; with no threshold every image keeps its 20 detections
    model.test_cfg.rcnn.score_thr = 0.0
    for_cpu(cfg._cfg_dict)
    cfg.train_cfg.update(max_epochs=EPOCHS, val_interval=EPOCHS)
    cfg.load_from = None
    cfg.custom_hooks = list(cfg.get("custom_hooks", [])) + [dict(type="RecordValidationMetrics")]
    path = out / f"{config.stem}_cpu.py"
    cfg.dump(str(path))
    return path


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """A scratch directory with every config's data under its own relative ``data_root``."""
    root = tmp_path_factory.mktemp("data")
    for config in CONFIGS:
        cfg = Config.fromfile(str(config))
        target = root / cfg.data_root
        if not target.exists():
            make_dataset(target, config_classes(cfg))
    return root


VALIDATED: list[dict] = []


@HOOKS.register_module()
class RecordValidationMetrics(Hook):
    """Keeps what the training run's own validation computed (test-only, evaluates nothing)."""

    def after_val_epoch(self, runner, metrics=None) -> None:
        VALIDATED.append(dict(metrics or {}))


@pytest.mark.parametrize("config", CONFIGS, ids=[c.stem for c in CONFIGS])
def test_config_trains_validates_and_tests(config, data_dir, tmp_path, monkeypatch, capsys):
    train_tool, test_tool = load_tool("train"), load_tool("test")
    monkeypatch.chdir(data_dir)  # the configs' relative data_root resolve here
    cfg_path = cpu_config(config, tmp_path)
    work = tmp_path / "work"
    VALIDATED.clear()
    train_tool.main([str(cfg_path), "--work-dir", str(work)])

    checkpoint = work / f"epoch_{EPOCHS}.pth"
    assert checkpoint.exists(), sorted(p.name for p in work.iterdir())
    (validated,) = VALIDATED  # one validation, at the end of the last epoch
    metrics = test_tool.main([str(cfg_path), str(checkpoint), "--work-dir", str(tmp_path / "t")])
    for iou_type in ("bbox", "segm"):
        for key in ("AP", "APr", "APc", "APf"):
            name = f"lvis/{iou_type}_{key}"
            assert name in validated, sorted(validated)
            assert name in metrics, sorted(metrics)
            # the same checkpoint, the same data and pipeline: validation and test agree
            assert metrics[name] == pytest.approx(validated[name], abs=1e-3)
            assert -1.0 <= metrics[name] <= 1.0
    with capsys.disabled():
        print(f"\n{config.stem}: " + ", ".join(f"{k}={v:.3f}" for k, v in sorted(metrics.items())))

    state = torch.load(checkpoint, map_location="cpu", weights_only=False)["state_dict"]
    fasa_heads = sorted({k.rsplit(".fasa.", 1)[0] for k in state if ".fasa." in k})
    if "fasa" not in config.stem:
        assert fasa_heads == []
        return
    heads = Config.fromfile(str(config)).model.roi_head.bbox_head
    assert len(fasa_heads) == (len(heads) if isinstance(heads, list) else 1)
    for head in fasa_heads:
        # epoch 0 was the warm-up; the hook adapted once, after epoch 1 (it records the
        # per-class losses of the held-out images: at least one class had data)
        # extra state: [epoch, num_adaptations]
        assert state[f"{head}.fasa._extra_state"].tolist() == [1, 1]
        assert state[f"{head}.fasa.prev_class_valid"].any()
        assert (state[f"{head}.fasa.seen"] > 0).any()
