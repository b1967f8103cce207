"""Small MMDetection models with FASA heads for the integration tests (CPU, seconds)."""

from __future__ import annotations

import copy

import torch
from mmengine.config import Config

import fasa_fast.mmdet  # noqa: F401  (registers the FASA heads)
from fasa_fast.mmdet.toy_lvis import make_toy_lvis

NUM_CLASSES = 20


def toy_dataset(root):
    return make_toy_lvis(
        root, num_classes=NUM_CLASSES, num_train=120, num_val=20, image_size=96, seed=0
    )


def base_config(tmp_path, name: str) -> Config:
    path = tmp_path / f"base_{name.replace('/', '_')}"
    path.write_text(f"_base_ = 'mmdet::_base_/models/{name}'\n")
    return Config.fromfile(str(path))


def shrink_backbone(cfg: Config) -> None:
    cfg.model.backbone.update(depth=18, init_cfg=None, norm_cfg=dict(type="BN", requires_grad=True))
    cfg.model.neck.in_channels = [64, 128, 256, 512]
    cfg.model.neck.out_channels = 64
    cfg.model.rpn_head.in_channels = 64
    cfg.model.rpn_head.feat_channels = 64


def fasa_head(head: dict, ann_file, **fasa) -> dict:
    head = copy.deepcopy(head)
    head["type"] = "FASA" + head["type"]
    head["num_classes"] = NUM_CLASSES
    # require_hook=False: most tests drive the head without a runner (and so without FASAHook)
    head["fasa"] = dict(ann_file=str(ann_file), warmup_epochs=0, capacity=16, require_hook=False)
    head["fasa"].update(fasa)
    return head


def mask_rcnn_config(
    tmp_path, ann_file=None, *, fasa=True, loss_cls=None, normed=False, **fasa_opts
) -> Config:
    cfg = base_config(tmp_path, "mask-rcnn_r50_fpn.py")
    shrink_backbone(cfg)
    roi = cfg.model.roi_head
    roi.bbox_roi_extractor.out_channels = 64
    roi.mask_roi_extractor.out_channels = 64
    roi.mask_head.update(in_channels=64, conv_out_channels=64, num_classes=NUM_CLASSES)
    head = dict(roi.bbox_head, in_channels=64, fc_out_channels=128, num_classes=NUM_CLASSES)
    if loss_cls is not None:
        head["loss_cls"] = loss_cls
    if normed:
        head["cls_predictor_cfg"] = dict(type="NormedLinear", tempearture=20)
    roi.bbox_head = fasa_head(head, ann_file, **fasa_opts) if fasa else head
    cfg.model.train_cfg.rcnn.sampler.num = 64
    cfg.model.train_cfg.rpn_proposal.max_per_img = 100
    return cfg


def cascade_config(tmp_path, ann_file, stages=(0, 1, 2)) -> Config:
    cfg = base_config(tmp_path, "cascade-mask-rcnn_r50_fpn.py")
    shrink_backbone(cfg)
    roi = cfg.model.roi_head
    roi.bbox_roi_extractor.out_channels = 64
    roi.mask_roi_extractor.out_channels = 64
    roi.mask_head.update(in_channels=64, conv_out_channels=64, num_classes=NUM_CLASSES)
    heads = []
    for i, head in enumerate(roi.bbox_head):
        head = dict(head, in_channels=64, fc_out_channels=128, num_classes=NUM_CLASSES)
        heads.append(fasa_head(head, ann_file) if i in stages else head)
    roi.bbox_head = heads
    for stage in cfg.model.train_cfg.rcnn:
        stage.sampler.num = 64
    cfg.model.train_cfg.rpn_proposal.max_per_img = 100
    return cfg


def build(cfg: Config):
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules

    register_all_modules()
    torch.manual_seed(0)
    return MODELS.build(cfg.model)


def batch(model, training=True, seed=0):
    from mmdet.testing import demo_mm_inputs

    torch.manual_seed(seed)
    packed = demo_mm_inputs(
        2, [[3, 96, 96], [3, 96, 96]], num_items=[4, 3], num_classes=NUM_CLASSES, with_mask=True
    )
    return model.data_preprocessor(packed, training)


def train_pipeline(size=96):
    return [
        dict(type="LoadImageFromFile"),
        dict(type="LoadAnnotations", with_bbox=True, with_mask=True),
        dict(type="Resize", scale=(size, size), keep_ratio=True),
        dict(type="PackDetInputs"),
    ]


def toy_dataset_cfg(root, split="train", pipeline=None):
    return dict(
        type="LVISV1Dataset",
        data_root=str(root) + "/",
        ann_file=f"annotations/lvis_v1_{split}.json",
        data_prefix=dict(img=""),
        pipeline=pipeline if pipeline is not None else train_pipeline(),
    )


def runner_config(
    tmp_path, root, ann_file, *, max_epochs=3, warmup_epochs=1, held_out=0.2
) -> Config:
    cfg = mask_rcnn_config(tmp_path, ann_file)
    cfg.model.roi_head.bbox_head.fasa.warmup_epochs = warmup_epochs
    split = dict(
        type="FASAHeldOutSplit",
        dataset=toy_dataset_cfg(root),
        fraction=held_out,
        max_images=8,
        seed=0,
    )
    loader = dict(
        batch_size=2,
        num_workers=0,
        sampler=dict(type="DefaultSampler", shuffle=True),
        collate_fn=dict(type="pseudo_collate"),
    )
    cfg.merge_from_dict(
        dict(
            default_scope="mmdet",
            work_dir=str(tmp_path / "work"),
            train_dataloader=dict(loader, dataset=dict(split, split="train")),
            train_cfg=dict(type="EpochBasedTrainLoop", max_epochs=max_epochs, val_interval=100),
            optim_wrapper=dict(
                optimizer=dict(type="SGD", lr=0.01, momentum=0.9, weight_decay=1e-4)
            ),
            default_hooks=dict(
                timer=dict(type="IterTimerHook"),
                logger=dict(type="LoggerHook", interval=50),
                param_scheduler=dict(type="ParamSchedulerHook"),
                checkpoint=dict(type="CheckpointHook", interval=1),
                sampler_seed=dict(type="DistSamplerSeedHook"),
            ),
            custom_hooks=[
                dict(
                    type="FASAHook",
                    adapt_dataloader=dict(loader, dataset=dict(split, split="adapt")),
                    max_images=8,
                )
            ],
            env_cfg=dict(cudnn_benchmark=False, dist_cfg=dict(backend="gloo")),
            randomness=dict(seed=0),
            log_level="WARNING",
        )
    )
    return cfg


def load_tool(name: str):
    """``tools/<name>.py`` as a module (the tools are scripts, not a package)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "tools" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"tools_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def probed_runners(monkeypatch, tool, probe_type) -> list:
    """Makes ``tool`` (a ``load_tool`` module) build each of its runners with a fresh
    ``probe_type()`` hook registered at the probe's ``priority``; returns the probes, one per
    run, in order."""
    from types import SimpleNamespace

    from mmengine.runner import Runner

    probes = []

    def from_cfg(cfg):
        runner = Runner.from_cfg(cfg)
        probes.append(probe_type())
        runner.register_hook(probes[-1], priority=probe_type.priority)
        return runner

    monkeypatch.setattr(tool, "Runner", SimpleNamespace(from_cfg=from_cfg))
    return probes
