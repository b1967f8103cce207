"""FASAHook in a real mmengine Runner on the generated long-tailed dataset."""

from __future__ import annotations

import pytest
import torch
from mmengine.runner import Runner

from fasa_fast.mmdet.checkpoint_loading import mmengine_checkpoint_loading
from tests.mmdet.helpers import runner_config, toy_dataset


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    root = tmp_path_factory.mktemp("toy")
    toy_dataset(root)
    return root


def small(root, tmp_path, images=24, **kwargs):
    """A runner config over the first ``images`` training images of the toy set (mmengine's
    ``indices``), split into training and held-out images (at most 8 held out): 24 gives 16
    training images, 8 iterations an epoch at 2 per batch, where all 120 gave 56."""
    cfg = runner_config(tmp_path, root, root / "annotations" / "lvis_v1_train.json", **kwargs)
    cfg.train_dataloader.dataset.dataset.indices = images
    for hook in cfg.custom_hooks:
        hook.adapt_dataloader.dataset.dataset.indices = images  # the same images to split
    return cfg


def test_held_out_split_partitions_the_training_set(toy, tmp_path):
    from fasa_fast.mmdet.datasets import FASAHeldOutSplit
    from tests.mmdet.helpers import toy_dataset_cfg

    train = FASAHeldOutSplit(
        toy_dataset_cfg(toy, pipeline=[]), split="train", fraction=0.25, max_images=20
    )
    adapt = FASAHeldOutSplit(
        toy_dataset_cfg(toy, pipeline=[]), split="adapt", fraction=0.25, max_images=20
    )
    train_ids = {train.get_data_info(i)["img_id"] for i in range(len(train))}
    adapt_ids = {adapt.get_data_info(i)["img_id"] for i in range(len(adapt))}
    assert len(adapt_ids) == 20 and len(train_ids) == 100 and not (train_ids & adapt_ids)


@pytest.mark.slow
def test_hook_adapts_and_resume_restores_state(toy, tmp_path):
    cfg = small(toy, tmp_path, max_epochs=3, warmup_epochs=1, held_out=0.85)
    runner = Runner.from_cfg(cfg)
    head = runner.model.roi_head.bbox_head
    p0 = head.fasa.prob.clone()
    runner.train()
    # epoch 1: warm-up; after epoch 2 the first adaptation records; after epoch 3 p moves
    assert head.fasa.num_adaptations == 2
    # one adaptation step: every class's p is p0 times alpha (1.1), beta (0.9) or 1 (no data in
    # its group), clamped to 1; and some class moved
    ratio = head.fasa.prob.double() / p0.double()
    steps = torch.tensor([1.0, 1.1, 0.9], dtype=torch.float64)
    on_a_step = (ratio[:, None] - steps).abs().min(dim=1).values < 1e-5
    assert (on_a_step | (head.fasa.prob == 1.0)).all(), ratio
    assert not torch.equal(head.fasa.prob, p0)
    history = runner.message_hub.get_info("fasa_history")
    assert [h["epoch"] for h in history] == [1, 2, 3] and "fasa/p_rare" in history[0]
    work = tmp_path / "work"
    assert (work / "fasa_probabilities.png").is_file() and (
        work / "fasa_weight_norms.png"
    ).is_file()

    final = {
        k: v.clone()
        for k, v in head.state_dict().items()
        if k.startswith("fasa.") and torch.is_tensor(v)
    }
    resumed_cfg = small(toy, tmp_path, max_epochs=3, warmup_epochs=1, held_out=0.85)
    resumed_cfg.load_from = str(work / "epoch_3.pth")
    resumed_cfg.resume = True
    resumed = Runner.from_cfg(resumed_cfg)
    with mmengine_checkpoint_loading():
        resumed.load_or_resume()
    rhead = resumed.model.roi_head.bbox_head
    for key, value in final.items():
        assert torch.equal(rhead.state_dict()[key], value), key
    assert rhead.fasa.num_adaptations == 2 and rhead.fasa.epoch == head.fasa.epoch


def test_adaptation_set_without_labels_fails_at_build(toy, tmp_path):
    cfg = small(toy, tmp_path, held_out=0.85)
    no_labels = [
        dict(type="LoadImageFromFile"),
        dict(type="Resize", scale=(96, 96), keep_ratio=True),
        dict(type="PackDetInputs"),
    ]
    cfg.custom_hooks[0].adapt_dataloader.dataset.dataset.pipeline = no_labels
    with pytest.raises(ValueError, match="no ground-truth labels"):
        Runner.from_cfg(cfg)


def test_paper_mode_adaptation_set_val_with_repeat_factor_sampling(toy, tmp_path):
    from tests.mmdet.helpers import toy_dataset_cfg

    cfg = small(toy, tmp_path, max_epochs=2, warmup_epochs=0, held_out=0.85)
    val = toy_dataset_cfg(toy, split="val")
    val["pipeline"] = [
        dict(type="LoadImageFromFile"),
        dict(type="LoadAnnotations", with_bbox=True),
        dict(type="Resize", scale=(96, 96), keep_ratio=True),
        dict(type="PackDetInputs"),
    ]
    cfg.custom_hooks = [
        dict(
            type="FASAHook",
            max_images=8,
            plot=False,
            adapt_dataloader=dict(
                batch_size=2,
                num_workers=0,
                sampler=dict(type="DefaultSampler", shuffle=False),
                dataset=dict(type="ClassBalancedDataset", oversample_thr=0.3, dataset=val),
            ),
        )
    ]
    runner = Runner.from_cfg(cfg)
    runner.train()
    head = runner.model.roi_head.bbox_head
    assert head.fasa.num_adaptations == 2


def test_hook_refuses_a_wrapper_that_broadcasts_buffers():
    # DDP(broadcast_buffers=True) would copy rank 0's stream key to every rank each forward
    from types import SimpleNamespace

    from fasa_fast.mmdet.hooks import FASAHook

    runner = SimpleNamespace(model=SimpleNamespace(broadcast_buffers=True))
    with pytest.raises(RuntimeError, match=r"broadcast_buffers=False"):
        FASAHook().before_train(runner)
