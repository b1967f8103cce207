"""The README's "FASA in your own MMDetection config" block, saved as the file it names, adds to
mmdet's LVIS v1 Mask R-CNN config exactly what the shipped FASA config adds to its baseline (the
package import, the FASA box head and its options, the held-out split around the LVIS dataset,
the hook, the resumable loop). The shipped config is trained, validated and tested end to end by
``tests/mmdet/test_configs.py``; this pins that the README gives a user the same thing."""

from __future__ import annotations

from pathlib import Path

from mmengine.config import Config

from tests.doc_blocks import readme_block

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "configs" / "fasa" / "mask-rcnn_r50_fpn_rfs_softmax-ce_24e_lvis-v1_fasa.py"
KEYS = ("custom_imports", "custom_hooks", "model", "train_dataloader")


def test_readme_config_block_is_the_shipped_fasa_config_without_its_schedule(tmp_path):
    block = readme_block("# my_fasa_config.py")
    path = tmp_path / "my_fasa_config.py"
    path.write_text(block)
    mine, shipped = Config.fromfile(str(path)), Config.fromfile(str(SHIPPED))
    for key in KEYS:
        assert mine.to_dict()[key] == shipped.to_dict()[key], f"README config differs in {key}"
    assert mine.train_cfg.type == shipped.train_cfg.type == "ResumableEpochBasedTrainLoop"
    # and what that is, against mmdet's own config
    assert mine.model.roi_head.bbox_head.type == "FASAShared2FCBBoxHead"
    assert mine.train_dataloader.dataset.dataset.type == "FASAHeldOutSplit"
    assert mine.train_dataloader.dataset.dataset.dataset.type == "LVISV1Dataset"
