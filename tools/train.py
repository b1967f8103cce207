"""Train a detector with an mmdet 3.x config (FASA configs included), mmengine's usual options.

    python tools/train.py configs/fasa/mask-rcnn_r50_fpn_rfs_softmax-ce_24e_lvis-v1_fasa.py
    python tools/train.py CONFIG --work-dir work_dirs/x --resume [CHECKPOINT] --amp \\
        --cfg-options train_dataloader.batch_size=4
    torchrun --nproc_per_node 8 tools/train.py CONFIG --launcher pytorch
"""

from __future__ import annotations

import argparse
import os
import os.path as osp

from mmengine.config import Config, DictAction
from mmengine.runner import Runner

from fasa_fast.mmdet.compat import mmengine_checkpoint_loading


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description="Train a detector (FASA-aware)")
    parser.add_argument("config", help="train config file path")
    parser.add_argument("--work-dir", help="the dir to save logs and models")
    parser.add_argument("--amp", action="store_true", help="automatic mixed precision training")
    parser.add_argument(
        "--resume",
        nargs="?",
        type=str,
        const="auto",
        help="resume from this checkpoint, or from the latest one in the work dir when no path is given",
    )
    parser.add_argument(
        "--cfg-options", nargs="+", action=DictAction, help="override config settings, key=value"
    )
    parser.add_argument("--launcher", choices=["none", "pytorch", "slurm", "mpi"], default="none")
    parser.add_argument("--local_rank", "--local-rank", type=int, default=0)
    args = parser.parse_args(argv)
    os.environ.setdefault("LOCAL_RANK", str(args.local_rank))
    return args


def build_config(args) -> Config:
    cfg = Config.fromfile(args.config)
    cfg.launcher = args.launcher
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get("work_dir") is None:
        cfg.work_dir = osp.join("work_dirs", osp.splitext(osp.basename(args.config))[0])
    if args.amp:
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
    args = parse_args(argv)
    cfg = build_config(args)
    runner = Runner.from_cfg(cfg)
    with mmengine_checkpoint_loading():  # mmengine 0.10 checkpoints under torch >= 2.6
        runner.train()


if __name__ == "__main__":
    main()
