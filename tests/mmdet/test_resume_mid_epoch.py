"""A run resumed with ``tools/train.py --resume`` from a mid-epoch iteration checkpoint ends where
the uninterrupted run ends: FASA's state (statistics, probabilities, groups, draw counter) and the
model's weights bit for bit.

A toy set of 26 training images with 8 held out leaves 18, 9 iterations an epoch at 2 per batch;
iteration checkpoints every 4 iterations give ``iter_12.pth``, 3 batches into epoch 2, after the
first adaptation (no warm-up). One process, ``num_workers=0`` and a pipeline without random
augmentation, so everything random in the step is drawn in the main process from the generators
FASAHook stores in the checkpoint.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from mmengine.hooks import Hook

from fasa_fast.mmdet.toy_lvis import make_toy_lvis
from tests.mmdet.helpers import NUM_CLASSES, load_tool, probed_runners, runner_config

ITERS_PER_EPOCH = 9


class EndProbe(Hook):
    """Where a run starts, how many steps it trains, and its final FASA state and weights."""

    priority = "LOWEST"

    def __init__(self) -> None:
        self.start = None
        self.steps = 0
        self.fasa = self.weights = None

    def before_train(self, runner) -> None:
        self.start = (runner.epoch, runner.iter)

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        self.steps += 1

    def after_train(self, runner) -> None:
        head = runner.model.roi_head.bbox_head
        self.fasa = {k: v.clone() for k, v in head.fasa.state_dict().items() if torch.is_tensor(v)}
        self.weights = {k: v.clone() for k, v in runner.model.state_dict().items()}
        self.num_adaptations = head.fasa.num_adaptations


def train_with_probe(monkeypatch, config: Path, work: Path, *args: str) -> EndProbe:
    train = load_tool("train")
    probes = probed_runners(monkeypatch, train, EndProbe)
    train.main([str(config), "--work-dir", str(work), *args])
    return probes[0]


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    root = tmp_path_factory.mktemp("toy")
    make_toy_lvis(root, num_classes=NUM_CLASSES, num_train=26, num_val=4, image_size=96, seed=0)
    return root


def write_config(toy, tmp_path, loop: str) -> Path:
    cfg = runner_config(
        tmp_path, toy, toy / "annotations" / "lvis_v1_train.json", max_epochs=2, warmup_epochs=0,
        held_out=0.3,
    )  # fmt: skip
    cfg.train_cfg.type = loop
    cfg.default_hooks.checkpoint = dict(type="CheckpointHook", by_epoch=False, interval=4)
    cfg.custom_imports = dict(imports=["fasa_fast.mmdet"], allow_failed_imports=False)
    path = tmp_path / f"{loop}.py"
    cfg.dump(str(path))
    return path


@pytest.fixture(scope="module")
def uninterrupted(toy, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("uninterrupted")
    config = write_config(toy, tmp, "ResumableEpochBasedTrainLoop")
    with pytest.MonkeyPatch.context() as monkeypatch:
        probe = train_with_probe(monkeypatch, config, tmp / "work")
    assert probe.steps == 2 * ITERS_PER_EPOCH and probe.num_adaptations == 2
    return config, tmp / "work", probe


@pytest.mark.slow
def test_mid_epoch_resume_ends_bit_identical_to_the_uninterrupted_run(
    uninterrupted, tmp_path, monkeypatch
):
    config, work, full = uninterrupted
    checkpoint = work / "iter_12.pth"
    assert checkpoint.is_file()
    resumed = train_with_probe(
        monkeypatch, config, tmp_path / "resumed", "--resume", str(checkpoint)
    )
    # it started 3 batches into epoch 2 and trained only the 6 batches left
    assert resumed.start == (1, 12)
    assert resumed.steps == 2 * ITERS_PER_EPOCH - 12
    assert resumed.num_adaptations == full.num_adaptations
    differ = [k for k in full.fasa if not torch.equal(resumed.fasa[k], full.fasa[k])]
    assert not differ, f"FASA state differs from the uninterrupted run: {differ}"
    differ = [k for k in full.weights if not torch.equal(resumed.weights[k], full.weights[k])]
    assert not differ, f"weights differ from the uninterrupted run: {differ[:5]}"


@pytest.mark.slow
def test_plain_epoch_loop_resuming_mid_epoch_is_warned_about(
    toy, uninterrupted, tmp_path, monkeypatch
):
    _, work, _ = uninterrupted
    config = write_config(toy, tmp_path, "EpochBasedTrainLoop")
    resumed = train_with_probe(
        monkeypatch, config, tmp_path / "plain", "--resume", str(work / "iter_12.pth")
    )
    # mmengine's loop replays the epoch from its first batch: 9 steps, not 6
    assert resumed.steps == ITERS_PER_EPOCH
    logs = "".join(p.read_text() for p in (tmp_path / "plain").rglob("*.log"))
    assert "ResumableEpochBasedTrainLoop" in logs and "twice" in logs, logs[-2000:]
