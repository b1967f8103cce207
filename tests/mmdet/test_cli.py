"""The command-line helpers of ``tools/train.py`` and ``tools/test.py`` (``fasa_fast.mmdet.cli``):
the config with the command line applied, the common arguments, and the CPU launcher that starts
gloo from torchrun's variables, with a stand-in ``torch.distributed``."""

from __future__ import annotations

import argparse
import datetime
import os

import pytest
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

import fasa_fast.mmdet.cli as cli


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
