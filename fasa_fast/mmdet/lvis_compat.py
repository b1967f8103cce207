"""Compatibility of PyPI ``lvis`` 0.5.3 with current numpy.

``lvis.eval.LVISEval.accumulate`` calls ``np.float``, an alias numpy removed in 1.24, so every
LVIS evaluation (mmdet's ``LVISMetric`` and ``LVISFixedAPMetric`` included) ends in an
``AttributeError`` on the pinned numpy. Instead of patching site-packages or numpy itself,
``install_lvis_numpy_compat()`` rebinds the name ``np`` *inside the module* ``lvis.eval`` to a
copy of numpy's namespace that also has ``float`` (the builtin, which is what the alias was).
Nothing outside ``lvis.eval`` sees a change; numpy itself is untouched.

``import fasa_fast.mmdet`` installs it, so any config that loads the package through
``custom_imports`` evaluates with mmdet's own LVIS metrics, shipped or user-written. It is
process-wide on purpose: a scoped shim (a ``with`` block in one metric class) left every metric
that the project did not wrap (the LVIS configs inherit mmdet's ``LVISMetric``) crashing at the
end of training.
"""

from __future__ import annotations

import types

import numpy as np


def _numpy_with_float_alias() -> types.ModuleType:
    """numpy's namespace (copied, so attribute access costs what numpy's does) plus ``float``."""
    view = types.ModuleType("numpy")
    view.__dict__.update(np.__dict__)  # includes numpy's module __getattr__ for lazy names
    view.float = float
    return view


def lvis_needs_compat() -> bool:
    """Whether this numpy lacks the ``np.float`` alias that lvis 0.5.3 uses."""
    return not hasattr(np, "float")


def install_lvis_numpy_compat() -> bool:
    """Make ``lvis.eval`` work on this numpy; idempotent. Returns whether a shim is in place.

    Returns False (and does nothing) when ``lvis`` is not installed or numpy still has the alias.
    """
    try:
        import lvis.eval
    except ImportError:
        return False
    if not lvis_needs_compat():
        return False
    if not hasattr(lvis.eval.np, "float"):
        lvis.eval.np = _numpy_with_float_alias()
    return True
