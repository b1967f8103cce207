"""Every shipped config builds and runs a training iteration on CPU (tiny overrides: R-18, small
images, the generated long-tailed dataset, 20 classes)."""

from __future__ import annotations

from pathlib import Path

import pytest
from mmengine.config import Config, ConfigDict
from mmengine.runner import Runner

from tests.mmdet.helpers import NUM_CLASSES, toy_dataset, train_pipeline

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "configs" / "fasa").glob("*.py"))


def shrink(node, root):
    """Walk the config: 20 classes, the toy dataset, a small backbone, no pretrained weights."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "num_classes" and value == 1203:
                node[key] = NUM_CLASSES
            elif key == "type" and value == "LVISV1Dataset":
                node.update(
                    data_root=str(root) + "/",
                    ann_file="annotations/lvis_v1_train.json",
                    pipeline=train_pipeline(96),
                )
            elif key == "fasa" and isinstance(value, dict):
                value.update(
                    data_root=str(root) + "/",
                    ann_file="annotations/lvis_v1_train.json",
                    warmup_epochs=0,
                )
            else:
                shrink(value, root)
    elif isinstance(node, list):
        for item in node:
            shrink(item, root)


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    root = tmp_path_factory.mktemp("toy")
    toy_dataset(root)
    return root


@pytest.mark.parametrize("config", CONFIGS, ids=[c.stem for c in CONFIGS])
def test_config_builds_and_trains_one_iteration(config, toy, tmp_path):
    cfg = Config.fromfile(str(config))
    if "fasa" in config.stem:
        assert "fasa_fast.mmdet" in cfg.custom_imports["imports"]
        assert cfg.custom_hooks[0]["type"] == "FASAHook"
    shrink(cfg._cfg_dict, toy)
    cfg.model.backbone.update(depth=18, init_cfg=None)
    cfg.model.neck.in_channels = [64, 128, 256, 512]
    rcnn = cfg.model.train_cfg.rcnn
    for stage in rcnn if isinstance(rcnn, list) else [rcnn]:
        stage.sampler.num = 64
    cfg.model.train_cfg.rpn_proposal.max_per_img = 100
    cfg.train_dataloader.update(num_workers=0, persistent_workers=False)
    cfg.merge_from_dict(
        dict(
            work_dir=str(tmp_path),
            val_dataloader=None,
            val_cfg=None,
            val_evaluator=None,
            test_dataloader=None,
            test_cfg=None,
            test_evaluator=None,
            param_scheduler=[],
            load_from=None,
            log_level="WARNING",
        )
    )
    cfg.train_cfg = ConfigDict(type="IterBasedTrainLoop", max_iters=1, val_interval=100)
    cfg.default_hooks.checkpoint = dict(type="CheckpointHook", interval=100)
    runner = Runner.from_cfg(cfg)
    runner.train()
    assert runner.iter == 1
    if "fasa" in config.stem:
        logged = runner.message_hub.log_scalars
        assert any(key.endswith("loss_cls_fasa") for key in logged), sorted(logged)
