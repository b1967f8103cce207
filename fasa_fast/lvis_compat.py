"""Compatibility of PyPI ``lvis`` 0.5.3 with current numpy, applied where the metric runs.

``lvis.eval.LVISEval.accumulate`` calls ``np.float``, an alias numpy removed in 1.24. Instead of
patching site-packages or numpy itself, ``lvis_numpy_compat()`` hands the ``lvis.eval`` module a
view of numpy that also has ``float`` (the builtin, which is what the alias was) for the
duration of a ``with`` block. Nothing outside ``lvis.eval`` sees a change.
"""

from __future__ import annotations

import contextlib
import types
from collections.abc import Iterator

import numpy as np


class _NumpyWithFloatAlias(types.ModuleType):
    """numpy, plus the ``np.float`` alias that lvis 0.5.3 still uses."""

    float = float

    def __init__(self) -> None:
        super().__init__("numpy")

    def __getattr__(self, name: str):
        return getattr(np, name)


@contextlib.contextmanager
def lvis_numpy_compat() -> Iterator[None]:
    """Run LVIS evaluation inside this block: ``with lvis_numpy_compat(): evaluator.run()``."""
    import lvis.eval

    if hasattr(np, "float"):  # an old numpy that still has the alias: nothing to do
        yield
        return
    original = lvis.eval.np
    lvis.eval.np = _NumpyWithFloatAlias()
    try:
        yield
    finally:
        lvis.eval.np = original
