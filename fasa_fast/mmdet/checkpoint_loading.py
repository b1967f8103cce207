"""Compatibility of the pinned mmengine (0.10.7) with torch >= 2.6, applied where it is needed.

mmengine saves its message hub (``HistoryBuffer`` objects, numpy arrays) in every checkpoint and
reads checkpoints back with ``torch.load``'s default arguments. torch 2.6 made that default
``weights_only=True``, which refuses those objects, so ``--resume`` fails. Inside
``mmengine_checkpoint_loading()`` a ``torch.load`` call that does not choose ``weights_only``
unpickles fully again — what mmengine was written for. Only load checkpoints you trust.
``tools/train.py`` and ``tools/test.py`` run the runner inside it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

_FLAG = "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"


@contextlib.contextmanager
def mmengine_checkpoint_loading() -> Iterator[None]:
    previous = os.environ.get(_FLAG)
    os.environ[_FLAG] = "1"
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(_FLAG, None)
        else:
            os.environ[_FLAG] = previous
