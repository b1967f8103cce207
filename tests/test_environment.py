"""The pinned environment holds what the project needs, working: mmcv with compiled ops,
mmdet's package configs, LVIS evaluation on this numpy, and triton.

In the pinned environment (``.venv``) a missing package fails; elsewhere (e.g. the bare GPU
image, which has no mmcv/mmdet) the tests that need it are skipped with the reason.
"""

from __future__ import annotations

import importlib

import numpy as np
import pytest
import torch

from tests.backends import in_pinned_env, need
from tests.lvis_files import tiny_lvis


@pytest.mark.skipif(not in_pinned_env(), reason="checks the pinned .venv only")
@pytest.mark.parametrize("name", ["mmdet", "mmcv", "mmcv._ext", "mmengine", "lvis", "triton"])
def test_pinned_env_has_every_optional_piece(name):
    # Elsewhere these skip their tests (tests/mmdet/conftest.py, tests/backends.py); here a
    # missing or broken one must fail. mmcv._ext is mmcv's compiled ops.
    importlib.import_module(name)


def test_mmcv_has_compiled_ops():
    mmcv = need("mmcv")
    from mmcv.ops import roi_align

    assert mmcv.__version__ == "2.1.0"
    feats = torch.arange(16.0).reshape(1, 1, 4, 4)
    rois = torch.tensor([[0.0, 0.0, 0.0, 4.0, 4.0]])
    out = roi_align(feats, rois, (1, 1), 1.0, 0, "avg", True)  # the C++ kernel of mmcv._ext
    assert out.item() == pytest.approx(7.5)


def test_mmdet_package_configs_resolve(tmp_path):
    mmdet = need("mmdet")
    from mmengine.config import Config

    assert mmdet.__version__ == "3.3.0"
    config = tmp_path / "inherit.py"  # how our configs inherit mmdet's (needs pkg_resources)
    config.write_text("_base_ = 'mmdet::lvis/mask-rcnn_r50_fpn_sample1e-3_ms-1x_lvis-v1.py'\n")
    cfg = Config.fromfile(str(config))
    assert cfg.model.roi_head.bbox_head.num_classes == 1203


def test_lvis_eval_runs_with_the_compat_shim(tmp_path):
    need("lvis")
    from lvis import LVIS, LVISEval, LVISResults

    from fasa_fast.mmdet.lvis_compat import install_lvis_numpy_compat

    gt_path, dets = tiny_lvis(tmp_path)
    gt = LVIS(gt_path)
    evaluator = LVISEval(gt, LVISResults(gt, dets), "bbox")
    if not hasattr(np, "float"):  # the shim is needed on this numpy: without it, it fails
        import lvis.eval

        # import fasa_fast.mmdet installs the shim for the whole process: undo it for this check
        shimmed, lvis.eval.np = lvis.eval.np, np
        try:
            with pytest.raises(AttributeError, match="float"):
                LVISEval(gt, LVISResults(gt, dets), "bbox").run()
        finally:
            lvis.eval.np = shimmed
    install_lvis_numpy_compat()
    evaluator.run()
    assert evaluator.results["AP"] == pytest.approx(1.0)
    assert evaluator.results["APr"] == pytest.approx(1.0)
    assert not hasattr(np, "float")  # numpy itself was never changed
