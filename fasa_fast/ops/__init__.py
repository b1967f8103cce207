"""The fasa_fast ops: one entry point per op, interchangeable backends underneath.

``torch.ops.fasa_fast.<name>`` is the registered custom op (one schema); the functions here
validate arguments and call it. Backend policy: ``fasa_fast.ops._library``.
"""

from fasa_fast.ops._library import get_backend, set_backend, use_backend
from fasa_fast.ops.fisher_distance import fisher_distance
from fasa_fast.ops.sample_virtual_features import make_rng_state, sample_virtual_features
from fasa_fast.ops.segmented_stats_update import segmented_stats_update_

__all__ = [
    "fisher_distance",
    "get_backend",
    "make_rng_state",
    "sample_virtual_features",
    "segmented_stats_update_",
    "set_backend",
    "use_backend",
]
