"""What ``tools/train.py`` and ``tools/test.py`` share: mmengine's usual command-line options."""

from __future__ import annotations

import argparse
import datetime
import os
import os.path as osp

import torch
import torch.distributed as dist
from mmengine.config import Config, DictAction
from mmengine.registry import MODEL_WRAPPERS
from torch.nn.parallel import DistributedDataParallel


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--work-dir", help="the dir to save logs, models and results")
    parser.add_argument(
        "--cfg-options", nargs="+", action=DictAction, help="override config settings, key=value"
    )
    parser.add_argument("--launcher", choices=["none", "pytorch", "slurm", "mpi"], default="none")
    parser.add_argument("--local_rank", "--local-rank", type=int, default=0)


def load_config(args: argparse.Namespace) -> Config:
    """The config with ``--cfg-options``, ``--launcher`` and the work dir applied."""
    os.environ.setdefault("LOCAL_RANK", str(args.local_rank))
    cfg = Config.fromfile(args.config)
    cfg.launcher = args.launcher
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get("work_dir") is None:
        cfg.work_dir = osp.join("work_dirs", osp.splitext(osp.basename(args.config))[0])
    return cfg


TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


def init_distributed_without_cuda(cfg: Config) -> bool:
    """``--launcher pytorch`` on a machine without CUDA: start the gloo group here.

    mmengine 0.10's ``init_dist`` calls ``torch.cuda.set_device(LOCAL_RANK)`` before it creates
    the process group, which fails on a CPU-only machine whatever the backend. The runner skips
    its own initialisation when a group already exists, so this creates the gloo group from
    torchrun's environment variables before the Runner is built, and gives the DDP wrapper
    ``device_ids=None`` (mmengine passes ``[LOCAL_RANK]``, which DDP refuses for a CPU module).
    Returns whether it did anything: nothing with CUDA, without ``--launcher pytorch`` or when a
    group exists already. A backend other than gloo is refused with the fix named.
    """
    if cfg.get("launcher", "none") != "pytorch" or torch.cuda.is_available():
        return False
    if dist.is_available() and dist.is_initialized():
        return False
    dist_cfg = dict((cfg.get("env_cfg") or {}).get("dist_cfg") or {})
    backend = dist_cfg.pop("backend", "nccl")
    if backend != "gloo":
        raise RuntimeError(
            f"--launcher pytorch without CUDA: the {backend!r} backend needs GPUs (and mmengine's "
            "launcher calls torch.cuda.set_device); on CPU add "
            "--cfg-options env_cfg.dist_cfg.backend=gloo"
        )
    missing = [name for name in TORCHRUN_VARIABLES if name not in os.environ]
    if missing:
        raise RuntimeError(
            f"--launcher pytorch: {', '.join(missing)} not set; start the tool with "
            "torchrun --nproc_per_node N tools/<tool>.py ... --launcher pytorch"
        )
    if dist_cfg.get("timeout") is not None:
        dist_cfg["timeout"] = datetime.timedelta(seconds=dist_cfg["timeout"])
    dist.init_process_group(
        "gloo",
        rank=int(os.environ["RANK"]),
        world_size=int(os.environ["WORLD_SIZE"]),
        **dist_cfg,
    )
    wrapper = cfg.get("model_wrapper_cfg")
    if wrapper is None:  # mmengine's own default wrapper, with a CPU device list
        wrapper = dict(
            type="MMDistributedDataParallel",
            broadcast_buffers=False,
            find_unused_parameters=cfg.get("find_unused_parameters", False),
        )
    wrapper = dict(wrapper)
    kind = wrapper.get("type", "MMDistributedDataParallel")
    kind = MODEL_WRAPPERS.get(kind) if isinstance(kind, str) else kind
    if isinstance(kind, type) and issubclass(kind, DistributedDataParallel):
        wrapper.setdefault("device_ids", None)
    cfg.model_wrapper_cfg = wrapper
    return True


def amp_device_available() -> bool:
    """mmengine's own condition for ``AmpOptimWrapper`` (a GPU, NPU, MLU or MUSA device)."""
    from mmengine.device import (
        is_cuda_available,
        is_mlu_available,
        is_musa_available,
        is_npu_available,
    )

    return is_cuda_available() or is_npu_available() or is_mlu_available() or is_musa_available()


def check_amp_device() -> None:
    """``--amp`` on a machine without an accelerator: stop before anything is built.

    mmengine's ``AmpOptimWrapper`` asserts an accelerator only when the runner builds it, after
    the datasets (minutes for LVIS); this says the same at once, with the fix.
    """
    if not amp_device_available():
        raise SystemExit(
            "--amp: mmengine's AmpOptimWrapper trains on a GPU (or NPU, MLU, MUSA) and this "
            "machine has none (torch.cuda.is_available() is False); train without --amp here"
        )
