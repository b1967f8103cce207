"""Train a detector with an mmdet 3.x config (FASA configs included), mmengine's usual options.

    python tools/train.py configs/fasa/mask-rcnn_r50_fpn_rfs_softmax-ce_24e_lvis-v1_fasa.py
    python tools/train.py CONFIG --work-dir work_dirs/x --resume [CHECKPOINT] --amp \\
        --cfg-options train_dataloader.batch_size=4
    torchrun --nproc_per_node 8 tools/train.py CONFIG --launcher pytorch
    (CPU: add --cfg-options env_cfg.dist_cfg.backend=gloo)
"""

from __future__ import annotations

import argparse

from mmengine.config import Config
from mmengine.runner import Runner

from fasa_fast.mmdet.checkpoint_loading import mmengine_checkpoint_loading
from fasa_fast.mmdet.cli import (
    add_common_arguments,
    check_amp_device,
    init_distributed_without_cuda,
    load_config,
)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Train a detector (FASA-aware)")
    parser.add_argument("config", help="train config file path")
    parser.add_argument("--amp", action="store_true", help="automatic mixed precision training")
    parser.add_argument(
        "--resume",
        nargs="?",
        type=str,
        const="auto",
        help="resume from this checkpoint, or from the latest one in the work dir when no path is given",
    )
    add_common_arguments(parser)
    return parser.parse_args(argv)


def build_config(args: argparse.Namespace) -> Config:
    cfg = load_config(args)
    if args.amp:
        check_amp_device()
        cfg.optim_wrapper.type = "AmpOptimWrapper"
        cfg.optim_wrapper.loss_scale = "dynamic"
    if args.resume == "auto":
        cfg.resume = True
        cfg.load_from = None
    elif args.resume is not None:
        cfg.resume = True
        cfg.load_from = args.resume
    return cfg


def main(argv=None) -> None:
    cfg = build_config(parse_args(argv))
    # CPU + torchrun: mmengine's init_dist would call torch.cuda.set_device; start gloo here
    init_distributed_without_cuda(cfg)
    runner = Runner.from_cfg(cfg)
    with mmengine_checkpoint_loading():  # mmengine 0.10 checkpoints under torch >= 2.6
        runner.train()


if __name__ == "__main__":
    main()
