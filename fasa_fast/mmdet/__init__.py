"""MMDetection 3.x integration of FASA: box heads, the adaptation hook, the held-out split.

Configs load it with ``custom_imports=dict(imports=['fasa_fast.mmdet'], allow_failed_imports=False)``.
All FASA logic lives in ``fasa_fast.FASA``; this package only connects it to mmdet.
"""

from fasa_fast.mmdet.bbox_heads import (
    FASABBoxHeadMixin,
    FASAShared2FCBBoxHead,
    FASAShared4Conv1FCBBoxHead,
)
from fasa_fast.mmdet.datasets import FASAHeldOutSplit
from fasa_fast.mmdet.hooks import FASAHook
from fasa_fast.mmdet.metrics import FASACocoLTMetric, FASALVISFixedAPMetric, FASALVISMetric

__all__ = [
    "FASABBoxHeadMixin",
    "FASACocoLTMetric",
    "FASAHeldOutSplit",
    "FASALVISFixedAPMetric",
    "FASALVISMetric",
    "FASAHook",
    "FASAShared2FCBBoxHead",
    "FASAShared4Conv1FCBBoxHead",
]
