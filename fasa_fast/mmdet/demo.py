"""The README's main command: Mask R-CNN + FASA on an embedded long-tailed dataset, on CPU.

1. generates the deterministic long-tailed LVIS-format dataset (``fasa_fast.mmdet.toy_lvis``) under
   ``--data-root`` unless it is there already;
2. trains ``configs/demo/mask-rcnn_r18_fpn_toy-lvis_fasa.py`` (ResNet-18 FPN Mask R-CNN, FASA
   box head, adaptation on a held-out 10% of the training images) for ``--epochs`` epochs;
3. evaluates on the validation split with the LVIS metric and prints AP / APr / APc / APf for
   boxes and masks, and where FASA's plots went.

Run: ``python -m fasa_fast.mmdet.demo [--epochs 12] [--work-dir work_dirs/demo]``
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEMO_CONFIG = REPO / "configs" / "demo" / "mask-rcnn_r18_fpn_toy-lvis_fasa.py"
CONFIG_DATA_ROOT = "data/toy_lvis/"


def _reroot(node, data_root: str) -> None:
    """Point every path under the config's data root at ``data_root``."""
    if isinstance(node, dict):
        for key, value in node.items():
            if isinstance(value, str) and value.startswith(CONFIG_DATA_ROOT):
                node[key] = data_root + value[len(CONFIG_DATA_ROOT) :]
            else:
                _reroot(value, data_root)
    elif isinstance(node, list):
        for item in node:
            _reroot(item, data_root)


def build_config(
    data_root: str | Path, work_dir: str | Path, epochs: int, keep_checkpoints: bool = False
):
    from mmengine.config import Config

    cfg = Config.fromfile(str(DEMO_CONFIG))
    _reroot(cfg._cfg_dict, str(Path(data_root).resolve()) + "/")
    cfg.work_dir = str(work_dir)
    cfg.train_cfg.max_epochs = epochs
    cfg.train_cfg.val_interval = epochs + 1  # evaluated once, after training, by main()
    cfg.param_scheduler[-1].update(
        end=epochs, milestones=[max(1, round(epochs * 2 / 3)), max(1, epochs - 1)]
    )
    # the last epoch's checkpoint; with keep_checkpoints every epoch's (FASA's statistics epoch by
    # epoch, for benchmarks/grouping_measurement.py)
    cfg.default_hooks.checkpoint.interval = 1 if keep_checkpoints else epochs
    return cfg


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", default="data/toy_lvis")
    parser.add_argument("--work-dir", default="work_dirs/demo")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--num-train", type=int, default=300, help="images generated for training")
    parser.add_argument(
        "--keep-checkpoints", action="store_true", help="save a checkpoint after every epoch"
    )
    args = parser.parse_args(argv)
    # mmengine 0.10 imports pkg_resources (kept by the setuptools < 81 pin) and says so on import
    warnings.filterwarnings("ignore", message="pkg_resources is deprecated")

    from mmengine.runner import Runner

    from fasa_fast.mmdet.checkpoint_loading import mmengine_checkpoint_loading
    from fasa_fast.mmdet.toy_lvis import make_toy_lvis

    start = time.perf_counter()
    root = Path(args.data_root)
    if not (root / "annotations" / "lvis_v1_train.json").is_file():
        print(f"generating the long-tailed toy dataset under {root}")
        make_toy_lvis(root, num_train=args.num_train)
    cfg = build_config(root, args.work_dir, args.epochs, args.keep_checkpoints)
    runner = Runner.from_cfg(cfg)
    with mmengine_checkpoint_loading():
        runner.train()
        metrics = runner.val_loop.run()
    print(
        f"\nMask R-CNN R18-FPN + FASA, {args.epochs} epochs on {root} (CPU): LVIS metrics on the val split"
    )
    print(f"{'':6}{'AP':>8}{'APr':>8}{'APc':>8}{'APf':>8}")
    for kind in ("bbox", "segm"):
        row = [metrics.get(f"lvis/{kind}_{m}", float("nan")) for m in ("AP", "APr", "APc", "APf")]
        print(f"{kind:6}" + "".join(f"{v:8.3f}" for v in row))
    work = Path(args.work_dir)
    print(f"\nFASA plots: {work / 'fasa_probabilities.png'} and {work / 'fasa_weight_norms.png'}")
    print(f"done in {time.perf_counter() - start:.0f} s")
    return metrics


if __name__ == "__main__":
    main()
