"""The rest of the MMDetection glue unit by unit, with stand-ins for the runner, the dataset and
torch.distributed: the resumable loop (which batches run, when the generators come back), the
generator states, the command-line helpers, the checkpoint-loading switch, the held-out split
and the adaptation sampler. The runner tests train through all of them; these pin each rule."""

from __future__ import annotations

import argparse
import datetime
import math
import os
import random
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

import fasa_fast.mmdet.cli as cli
import fasa_fast.mmdet.datasets as datasets_module
import fasa_fast.mmdet.loops as loops_module
from fasa_fast.mmdet.compat import mmengine_checkpoint_loading
from fasa_fast.mmdet.datasets import FASAAdaptationSampler, FASAHeldOutSplit
from fasa_fast.mmdet.loops import (
    ResumableEpochBasedTrainLoop,
    iterations_into_epoch,
    restore_rng_states,
    rng_states,
)
from fasa_fast.splits import fixed_sample, held_out_indices


# ---- the resumable loop ---------------------------------------------------------------------
class Batches:
    """A dataloader stand-in: making an iterator draws from torch's generator (as a DataLoader's
    does: its base seed), recorded in ``seeds``; ``read`` counts the batches taken."""

    def __init__(self, n):
        self.n, self.read, self.seeds = n, 0, []

    def __len__(self):
        return self.n

    def __iter__(self):
        self.seeds.append(torch.rand(1).item())
        for i in range(self.n):
            self.read += 1
            yield f"batch{i}"


def stand_in_loop(batches, iteration, epoch):
    loop = ResumableEpochBasedTrainLoop.__new__(ResumableEpochBasedTrainLoop)
    events = []
    model = SimpleNamespace(train=lambda: events.append("train"))
    loop._runner = SimpleNamespace(call_hook=events.append, model=model)
    loop.dataloader, loop._iter, loop._epoch = batches, iteration, epoch
    loop._resume_rng_states = None

    def run_iter(idx, data_batch):
        events.append((idx, data_batch, torch.rand(1).item()))
        loop._iter += 1

    loop.run_iter = run_iter
    return loop, events


def test_the_loop_is_built_as_mmengine_builds_it():
    # positional and keyword arguments reach EpochBasedTrainLoop; nothing pending to restore
    class Loader(list):
        dataset = SimpleNamespace()  # no metainfo: mmengine only warns

    loader = Loader([0, 1, 2])
    loop = ResumableEpochBasedTrainLoop(SimpleNamespace(), loader, max_epochs=2)
    assert (loop.max_epochs, loop.max_iters, loop.dataloader) == (2, 6, loader)
    assert loop._resume_rng_states is None


def test_iterations_into_epoch():
    loop = SimpleNamespace(iter=11, epoch=2, dataloader=[0] * 4)
    assert iterations_into_epoch(loop) == 3
    assert iterations_into_epoch(SimpleNamespace(iter=8, epoch=2, dataloader=[0] * 4)) == 0


def test_an_epoch_from_its_start_runs_every_batch():
    batches = Batches(3)
    loop, events = stand_in_loop(batches, iteration=6, epoch=2)
    loop.run_epoch()
    names = [e if isinstance(e, str) else e[:2] for e in events]
    assert names == [
        "before_train_epoch",
        "train",
        (0, "batch0"),
        (1, "batch1"),
        (2, "batch2"),
        "after_train_epoch",
    ], names
    assert loop.epoch == 3 and loop.iter == 9


def test_a_mid_epoch_resume_skips_the_trained_batches(monkeypatch):
    logged = []
    monkeypatch.setattr(
        loops_module, "print_log", lambda msg, logger=None: logged.append((msg, logger))
    )
    batches = Batches(5)
    loop, events = stand_in_loop(batches, iteration=5 * 2 + 3, epoch=2)
    loop.run_epoch()
    runs = [e[:2] for e in events if isinstance(e, tuple)]
    assert runs == [(3, "batch3"), (4, "batch4")], f"batches trained: {runs}"
    assert batches.read == 5, "the skipped batches are read from the loader, then dropped"
    assert events[:2] == ["before_train_epoch", "train"] and events[-1] == "after_train_epoch"
    assert loop.epoch == 3
    assert logged == [
        (
            "resuming epoch 3 at batch 4 of 5: skipping the 3 batches the checkpoint had trained",
            "current",  # mmengine's current logger: the run's log file too
        )
    ], logged


@pytest.mark.parametrize("iteration", [5 * 2 + 5, 5 * 2 - 1])
def test_a_checkpoint_outside_the_epoch_is_refused(iteration):
    loop, events = stand_in_loop(Batches(5), iteration=iteration, epoch=2)
    with pytest.raises(RuntimeError, match="another dataset, batch size or number of GPUs"):
        loop.run_epoch()
    assert events == [], "nothing may run before the check"


@pytest.mark.parametrize("done", [0, 2])
def test_saved_generators_come_back_where_the_interrupted_run_stood(done):
    torch.manual_seed(7)
    saved = rng_states()
    first = torch.rand(1).item()  # what the interrupted run drew next after its checkpoint
    torch.manual_seed(99)
    batches = Batches(4)
    loop, events = stand_in_loop(batches, iteration=4 + done, epoch=1)
    loop.resume_rng_states(saved)
    loop.run_epoch()
    draws = [e[2] for e in events if isinstance(e, tuple)]
    if done == 0:  # at an epoch boundary: before the loader's iterator is made
        assert batches.seeds == [first], "the iterator must be made after the restore"
    else:  # mid-epoch: after the skipped batches, before the next one trains
        assert batches.seeds != [first] and draws[0] == first
    assert loop._resume_rng_states is None, "the states are used once"
    loop._iter, loop._epoch = 8, 2
    loop.run_epoch()  # the next epoch does not restore them again
    assert batches.seeds[-1] != first


def test_generator_states_round_trip():
    random.seed(3)
    np.random.seed(3)
    torch.manual_seed(3)
    np.random.randn()  # leaves a cached Gaussian in numpy's state
    states = rng_states()
    expected = (
        random.random(),
        random.gauss(0, 1),
        np.random.randn(),
        np.random.rand(),
        torch.rand(2),
    )
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    restore_rng_states(states)
    got = (random.random(), random.gauss(0, 1), np.random.randn(), np.random.rand(), torch.rand(2))
    assert got[:4] == expected[:4]
    torch.testing.assert_close(got[4], expected[4], rtol=0, atol=0)
    assert isinstance(states["python"][1], torch.Tensor), "stored as tensors (weights_only loads)"
    assert isinstance(states["numpy"][1], torch.Tensor)
    assert "cuda" not in states or torch.cuda.is_available()


# ---- the command-line helpers -----------------------------------------------------------------
def test_load_config_applies_the_command_line(tmp_path, monkeypatch):
    path = tmp_path / "my_config.py"
    path.write_text("model = dict(depth=50)\nlr = 0.1\n")
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    args = argparse.Namespace(
        config=str(path), launcher="pytorch", cfg_options={"lr": 0.5}, work_dir=None, local_rank=3
    )
    cfg = cli.load_config(args)
    assert (cfg.lr, cfg.model.depth, cfg.launcher) == (0.5, 50, "pytorch")
    assert cfg.work_dir == os.path.join("work_dirs", "my_config")
    assert os.environ["LOCAL_RANK"] == "3"
    args = argparse.Namespace(
        config=str(path), launcher="none", cfg_options=None, work_dir="out", local_rank=0
    )
    monkeypatch.setenv("LOCAL_RANK", "1")  # torchrun's value wins over --local-rank
    cfg = cli.load_config(args)
    assert (cfg.work_dir, cfg.lr, os.environ["LOCAL_RANK"]) == ("out", 0.1, "1")
    path.write_text("work_dir = 'from_config'\n")
    args.work_dir = None
    assert cli.load_config(args).work_dir == "from_config"


def test_common_arguments():
    parser = argparse.ArgumentParser()
    cli.add_common_arguments(parser)
    args = parser.parse_args([])
    assert (args.work_dir, args.cfg_options, args.launcher, args.local_rank) == (
        None,
        None,
        "none",
        0,
    )
    args = parser.parse_args(
        [
            "--work-dir",
            "w",
            "--cfg-options",
            "a.b=1",
            "c=x",
            "--launcher",
            "pytorch",
            "--local-rank",
            "2",
        ]
    )
    assert (args.work_dir, args.cfg_options, args.launcher, args.local_rank) == (
        "w",
        {"a.b": 1, "c": "x"},
        "pytorch",
        2,
    )
    assert parser.parse_args(["--local_rank", "4"]).local_rank == 4


TORCHRUN = dict(RANK="1", WORLD_SIZE="2", LOCAL_RANK="1", MASTER_ADDR="127.0.0.1", MASTER_PORT="1")


def cpu_world(monkeypatch, environ=TORCHRUN):
    calls = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(dist, "is_initialized", lambda: False)
    monkeypatch.setattr(dist, "init_process_group", lambda *a, **k: calls.append((a, k)))
    for name in cli.TORCHRUN_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    return calls


def cfg(**entries):
    from mmengine.config import Config

    return Config(
        dict(dict(launcher="pytorch", env_cfg=dict(dist_cfg=dict(backend="gloo"))), **entries)
    )


def test_cpu_launcher_starts_gloo_from_torchrun_variables(monkeypatch):
    calls = cpu_world(monkeypatch)
    config = cfg(env_cfg=dict(dist_cfg=dict(backend="gloo", timeout=90)))
    assert cli.init_distributed_without_cuda(config) is True
    assert calls == [
        (("gloo",), dict(rank=1, world_size=2, timeout=datetime.timedelta(seconds=90)))
    ], calls
    assert config.model_wrapper_cfg == dict(
        type="MMDistributedDataParallel",
        broadcast_buffers=False,
        find_unused_parameters=False,
        device_ids=None,
    )
    calls.clear()
    config = cfg(find_unused_parameters=True)
    cli.init_distributed_without_cuda(config)
    assert calls == [(("gloo",), dict(rank=1, world_size=2))]
    assert config.model_wrapper_cfg.find_unused_parameters is True


class NotDDP(torch.nn.Module):
    pass


class MyDDP(DistributedDataParallel):
    pass


def test_cpu_launcher_gives_ddp_wrappers_no_device_ids(monkeypatch):
    cpu_world(monkeypatch)
    config = cfg(model_wrapper_cfg=dict(type=MyDDP, broadcast_buffers=False))
    cli.init_distributed_without_cuda(config)
    assert config.model_wrapper_cfg == dict(type=MyDDP, broadcast_buffers=False, device_ids=None)
    config = cfg(model_wrapper_cfg=dict(type=NotDDP))
    cli.init_distributed_without_cuda(config)
    assert config.model_wrapper_cfg == dict(type=NotDDP), "not a DDP: left as configured"
    config = cfg(model_wrapper_cfg=dict(broadcast_buffers=False))  # no type: mmengine's DDP
    cli.init_distributed_without_cuda(config)
    assert config.model_wrapper_cfg == dict(broadcast_buffers=False, device_ids=None)
    config = cfg(model_wrapper_cfg=dict(type="MMDistributedDataParallel", device_ids=[0]))
    cli.init_distributed_without_cuda(config)
    assert config.model_wrapper_cfg.device_ids == [0], "an explicit device list is kept"


def test_cpu_launcher_does_nothing_where_it_is_not_needed(monkeypatch):
    calls = cpu_world(monkeypatch)
    assert cli.init_distributed_without_cuda(cfg(launcher="none")) is False
    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    assert cli.init_distributed_without_cuda(cfg()) is False
    monkeypatch.setattr(dist, "is_initialized", lambda: False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert cli.init_distributed_without_cuda(cfg()) is False
    assert calls == []


def test_cpu_launcher_refuses_nccl_and_a_missing_environment(monkeypatch):
    calls = cpu_world(monkeypatch)
    with pytest.raises(RuntimeError, match="the 'nccl' backend needs GPUs"):
        cli.init_distributed_without_cuda(cfg(env_cfg=dict(dist_cfg=dict())))
    cpu_world(monkeypatch, environ=dict(RANK="0", WORLD_SIZE="2", LOCAL_RANK="0"))
    with pytest.raises(RuntimeError, match="MASTER_ADDR, MASTER_PORT not set"):
        cli.init_distributed_without_cuda(cfg())
    assert calls == []


# ---- torch.load's weights_only default, switched for mmengine's loads ---------------------------
@pytest.mark.parametrize("before", [None, "0"])
def test_checkpoint_loading_switch_restores_the_environment(monkeypatch, before):
    name = "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"
    if before is None:
        monkeypatch.delenv(name, raising=False)
    else:
        monkeypatch.setenv(name, before)
    with pytest.raises(KeyError):
        with mmengine_checkpoint_loading():
            assert os.environ[name] == "1"
            raise KeyError("inside")
    assert os.environ.get(name) == before


# ---- the held-out split and the adaptation sampler --------------------------------------------
class Images:
    """A dataset stand-in: image i holds the classes ``classes[i]``."""

    metainfo = {"classes": ("a", "b", "c")}

    def __init__(self, classes):
        self.classes, self.inits = classes, 0

    def full_init(self):
        self.inits += 1

    def __len__(self):
        return len(self.classes)

    def get_cat_ids(self, i):
        return list(self.classes[i])

    def get_data_info(self, i):
        return {"img_id": i}

    def __getitem__(self, i):
        return f"image{i}"


CLASSES = [[0], [0, 1], [1], [2], [2], [0], [1, 2], [0], [1], [2]]


@pytest.mark.parametrize("strategy", ["coverage", "random"])
def test_held_out_split_partitions_by_the_split_rule(strategy):
    # min_class_images=5: no class has 5 images, so coverage holds none out for coverage's sake
    # (with the default 2 it would pick other images: [0, 1, 4])
    kwargs = dict(fraction=0.25, strategy=strategy, min_class_images=5, seed=4)
    adapt = FASAHeldOutSplit(Images(CLASSES), split="adapt", **kwargs)
    train = FASAHeldOutSplit(Images(CLASSES), split="train", **kwargs)
    held = held_out_indices(
        CLASSES, math.ceil(0.25 * 10), strategy=strategy, min_class_images=5, seed=4
    )
    assert held == [0, 4, 9]
    assert [adapt.get_data_info(i)["img_id"] for i in range(len(adapt))] == held
    rest = [i for i in range(10) if i not in held]
    assert [train[i] for i in range(len(train))] == [f"image{i}" for i in rest]
    assert [train.get_cat_ids(i) for i in range(len(train))] == [CLASSES[i] for i in rest]
    assert adapt.metainfo == Images.metainfo


def test_held_out_split_caps_at_max_images_and_initialises_once():
    images = Images(CLASSES)
    split = FASAHeldOutSplit(images, split="adapt", fraction=0.5, max_images=2, lazy_init=True)
    assert split._indices is None and images.inits == 0, "lazy_init: nothing read yet"
    assert len(split) == 2
    split.full_init()
    assert images.inits == 1
    assert len(FASAHeldOutSplit(Images(CLASSES), split="adapt", fraction=0.5)) == 5
    # a cap above ceil(fraction * N) changes nothing
    assert len(FASAHeldOutSplit(Images(CLASSES), split="adapt", fraction=0.2, max_images=4)) == 2


def test_held_out_split_replaces_the_pipeline_of_a_config(monkeypatch):
    built = []
    monkeypatch.setattr(
        datasets_module.DATASETS, "build", lambda config: built.append(config) or Images(CLASSES)
    )
    FASAHeldOutSplit(
        dict(type="X", pipeline=["aug"]), split="adapt", fraction=0.2, pipeline=["plain"]
    )
    assert built == [dict(type="X", pipeline=["plain"])]
    with pytest.raises(ValueError, match="can only replace the pipeline of a dataset config"):
        FASAHeldOutSplit(Images(CLASSES), pipeline=[])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(split="val"), "split: expected 'train' or 'adapt', got 'val'"),
        (dict(fraction=0.0), r"fraction: expected a value in \(0, 1\), got 0.0"),
        (dict(fraction=1.0), r"fraction: expected a value in \(0, 1\), got 1.0"),
        (dict(strategy="first"), "strategy: expected one of"),
        (dict(fraction=0.95, strategy="random"), "the 'train' split of 10 images is empty"),
    ],
)
def test_held_out_split_refuses_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        FASAHeldOutSplit(Images(CLASSES), **kwargs)


def test_held_out_split_defaults():
    split = FASAHeldOutSplit(Images(CLASSES))
    got = (
        split.split,
        split.fraction,
        split.max_images,
        split.strategy,
        split.min_class_images,
        split.seed,
    )
    assert got == ("train", 0.01, None, "coverage", 2, 0)
    assert len(split) == 9  # ceil(0.01 * 10) = 1 image held out


@pytest.mark.parametrize("rank, world", [(0, 1), (0, 2), (1, 2), (2, 3)])
def test_adaptation_sampler_splits_one_fixed_sample_over_the_ranks(monkeypatch, rank, world):
    monkeypatch.setattr(datasets_module, "get_dist_info", lambda: (rank, world))
    sampler = FASAAdaptationSampler(list(range(40)), num_samples=7, seed=3)
    expected = fixed_sample(40, 7, seed=3)[rank::world]
    assert list(sampler) == expected and len(sampler) == len(expected)
    everything = FASAAdaptationSampler(list(range(5)))
    assert list(everything) == list(range(5))[rank::world]
    default_seed = FASAAdaptationSampler(list(range(40)), num_samples=7)
    assert list(default_seed) == fixed_sample(40, 7, seed=0)[rank::world]


# ---- lvis-api on the pinned numpy ---------------------------------------------------------------
def test_lvis_shim_gives_lvis_eval_a_float_alias_and_leaves_numpy_alone(monkeypatch):
    import lvis.eval

    from fasa_fast.mmdet import lvis_compat

    assert lvis_compat.lvis_needs_compat() is (not hasattr(np, "float"))
    monkeypatch.setattr(lvis.eval, "np", np)  # as lvis imported it, before the shim
    if not lvis_compat.lvis_needs_compat():
        assert lvis_compat.install_lvis_numpy_compat() is False and lvis.eval.np is np
        return
    assert lvis_compat.install_lvis_numpy_compat() is True
    view = lvis.eval.np
    assert view is not np and view.__name__ == "numpy" and view.float is float
    assert view.zeros is np.zeros and view.asarray is np.asarray, "numpy's own names, unchanged"
    assert not hasattr(np, "float"), "numpy itself must stay untouched"
    assert lvis_compat.install_lvis_numpy_compat() is True and lvis.eval.np is view, "idempotent"
