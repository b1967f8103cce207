"""The lvis-api shim on the pinned numpy (``fasa_fast.mmdet.lvis_compat``): ``lvis.eval`` gets a
numpy view with the removed ``np.float`` alias, numpy itself stays untouched."""

from __future__ import annotations

import numpy as np


def test_lvis_shim_gives_lvis_eval_a_float_alias_and_leaves_numpy_alone(monkeypatch):
    import lvis.eval

    from fasa_fast.mmdet import lvis_compat

    assert lvis_compat.lvis_needs_compat() is (not hasattr(np, "float"))
    monkeypatch.setattr(lvis.eval, "np", np)  # as lvis imported it, before the shim
    if not lvis_compat.lvis_needs_compat():
        assert lvis_compat.install_lvis_numpy_compat() is False and lvis.eval.np is np
        return
    assert lvis_compat.install_lvis_numpy_compat() is True
    view = lvis.eval.np
    assert view is not np and view.__name__ == "numpy" and view.float is float
    assert view.zeros is np.zeros and view.asarray is np.asarray, "numpy's own names, unchanged"
    assert not hasattr(np, "float"), "numpy itself must stay untouched"
    assert lvis_compat.install_lvis_numpy_compat() is True and lvis.eval.np is view, "idempotent"
