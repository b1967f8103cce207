"""MMDetection 3.x integration of FASA: box heads, the adaptation hook, the held-out split.

Configs load it with ``custom_imports=dict(imports=['fasa_fast.mmdet'], allow_failed_imports=False)``.
All FASA logic lives in ``fasa_fast.FASA``; this package only connects it to mmdet (and gives
mmengine's epoch loop the mid-epoch resume FASA's state needs: ``loops.py``).
"""

from fasa_fast.mmdet.bbox_heads import (
    FASABBoxHeadMixin,
    FASAShared2FCBBoxHead,
    FASAShared4Conv1FCBBoxHead,
)
from fasa_fast.mmdet.datasets import FASAHeldOutSplit
from fasa_fast.mmdet.hooks import FASAHook
from fasa_fast.mmdet.loops import ResumableEpochBasedTrainLoop
from fasa_fast.mmdet.lvis_compat import install_lvis_numpy_compat
from fasa_fast.mmdet.metrics import FASACocoLTMetric, FASALVISFixedAPMetric

# mmdet's own LVISMetric / LVISFixedAPMetric (used by the shipped LVIS configs and by users'
# configs) need the lvis-api numpy shim on the pinned numpy: see fasa_fast.mmdet.lvis_compat.
install_lvis_numpy_compat()

__all__ = [
    "FASABBoxHeadMixin",
    "FASACocoLTMetric",
    "FASAHeldOutSplit",
    "FASALVISFixedAPMetric",
    "FASAHook",
    "FASAShared2FCBBoxHead",
    "FASAShared4Conv1FCBBoxHead",
    "ResumableEpochBasedTrainLoop",
]
