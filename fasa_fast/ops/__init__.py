"""The fasa_fast ops: one entry point per op, interchangeable backends underneath.

Each op module declares its op once (``fasa_fast.ops._registry``) and holds its public
wrapper, which validates arguments and calls ``torch.ops.fasa_fast.<name>``. Importing an op
module below is all it takes to add an op; ``_library.install()`` then defines and routes
every declared op. Backend policy: ``fasa_fast.ops._library``.
"""

from fasa_fast.ops import _library
from fasa_fast.ops._library import get_backend, set_backend, use_backend
from fasa_fast.ops.fisher_distance import fisher_distance
from fasa_fast.ops.sample_virtual_features import make_rng_state, sample_virtual_features
from fasa_fast.ops.segmented_stats_update import segmented_stats_update_

_library.install()

__all__ = [
    "fisher_distance",
    "get_backend",
    "make_rng_state",
    "sample_virtual_features",
    "segmented_stats_update_",
    "set_backend",
    "use_backend",
]
