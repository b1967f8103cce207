"""fasa_fast: fast FASA (adaptive feature augmentation and sampling) for long-tailed detection.

Layers: ``fasa_fast.FASA`` (the framework-free engine: state, virtual-feature loss, adaptive
sampling, grouping), ``fasa_fast.ops`` (custom ops with reference / C++ / CUDA / Triton
backends), ``fasa_fast.kernels`` (the Triton kernels, shipped from the repo's ``kernels/``).
"""

from fasa_fast._extension import extension_error, extension_loaded
from fasa_fast.annotations import ClassCounts, class_counts_from_annotations
from fasa_fast.engine import FASA, FASAGroupingWarning, initial_probabilities
from fasa_fast.grouping import group_classes
from fasa_fast.ops import (
    fisher_distance,
    make_rng_state,
    sample_virtual_features,
    segmented_stats_update_,
)

__version__ = "0.1.0"  # the only place the version is written (setup.py, CHANGELOG.md read it)

__all__ = [
    "FASA",
    "FASAGroupingWarning",
    "ClassCounts",
    "__version__",
    "class_counts_from_annotations",
    "group_classes",
    "initial_probabilities",
    "extension_error",
    "extension_loaded",
    "fisher_distance",
    "make_rng_state",
    "sample_virtual_features",
    "segmented_stats_update_",
]
