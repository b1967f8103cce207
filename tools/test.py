"""Evaluate a trained detector with an mmdet 3.x config (LVIS: AP, APr, APc, APf).

python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--cfg-options k=v ...]
torchrun --nproc_per_node 8 tools/test.py CONFIG CHECKPOINT --launcher pytorch
    (CPU: add --cfg-options env_cfg.dist_cfg.backend=gloo)
"""

from __future__ import annotations

import argparse

from mmengine.runner import Runner

from fasa_fast.mmdet.checkpoint_loading import mmengine_checkpoint_loading
from fasa_fast.mmdet.cli import (
    add_common_arguments,
    init_distributed_without_cuda,
    load_config,
)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Test (and evaluate) a detector")
    parser.add_argument("config", help="test config file path")
    parser.add_argument("checkpoint", help="checkpoint file")
    add_common_arguments(parser)
    return parser.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    cfg = load_config(args)
    cfg.load_from = args.checkpoint
    # CPU + torchrun: mmengine's init_dist would call torch.cuda.set_device; start gloo here
    init_distributed_without_cuda(cfg)
    runner = Runner.from_cfg(cfg)
    with mmengine_checkpoint_loading():
        return runner.test()


if __name__ == "__main__":
    main()
