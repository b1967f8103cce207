"""Loading of the compiled extension ``fasa_fast._C``.

Importing it registers the C++/CUDA kernels with the dispatcher. When it is missing (not built,
or built against another torch) the package keeps working on the pure-PyTorch reference
kernels and says so once, with the reason.
"""

from __future__ import annotations

import importlib
import warnings
from types import ModuleType

import torch  # noqa: F401  (loads libc10/libtorch, which the extension links against)

_module: ModuleType | None = None
_error: str | None = None


def _load() -> None:
    global _module, _error
    try:
        _module = importlib.import_module("fasa_fast._C")
    except ImportError as exc:  # a missing .so, or an undefined symbol after a torch upgrade
        _error = f"{type(exc).__name__}: {exc}"
        warnings.warn(
            "fasa_fast: the compiled extension is unavailable, using the pure-PyTorch reference "
            f"kernels ({_error}). Rebuild with `pip install -e . --no-build-isolation`.",
            RuntimeWarning,
            stacklevel=3,
        )


_load()


def extension_loaded() -> bool:
    """True when ``fasa_fast._C`` was imported and its kernels are registered."""
    return _module is not None


def extension_error() -> str | None:
    """Why the extension could not be loaded, or None when it was."""
    return _error


def extension_path() -> str | None:
    """File of the loaded extension library, or None."""
    return getattr(_module, "__file__", None)
