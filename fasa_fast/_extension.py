"""Loading of the compiled extension ``fasa_fast._C``.

Importing it registers the C++/CUDA kernels with the dispatcher. When it is missing (not built,
or built against another torch) the package keeps working on the pure-PyTorch reference
kernels and says so once, with the reason.
"""

from __future__ import annotations

import importlib
import warnings
from types import ModuleType

import torch  # loads libc10/libtorch, which the extension links against

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
            f"kernels ({_error}). Rebuild with `pip install -e .` (docs/install.md).",
            RuntimeWarning,
            stacklevel=3,
        )


_load()
if (
    _module is not None
    and getattr(_module, "built_for_torch", torch.__version__) != torch.__version__
):
    # It loaded, so the symbols it uses exist; the kernels may still disagree with this torch's
    # ABI. Said once, with both versions: the usual cause is a torch upgrade after the build.
    warnings.warn(
        f"fasa_fast: the compiled extension was built for torch {_module.built_for_torch} but "
        f"torch {torch.__version__} is running; rebuild it with `pip install -e .`.",
        RuntimeWarning,
        stacklevel=2,
    )


def extension_loaded() -> bool:
    """True when ``fasa_fast._C`` was imported and its kernels are registered."""
    return _module is not None


def extension_error() -> str | None:
    """Why the extension could not be loaded, or None when it was."""
    return _error


def extension_path() -> str | None:
    """File of the loaded extension library, or None."""
    return getattr(_module, "__file__", None)


def build_info() -> dict[str, str] | None:
    """What the loaded extension was built against, as compiled into it by setup.py:
    ``torch`` (torch.__version__ at build time), ``cxx`` (the C++ standard), ``cuda`` (the
    toolkit release of its CUDA kernels, "" for a CPU-only build) and ``cuda_archs``
    (TORCH_CUDA_ARCH_LIST), ``no_cuda_reason`` (why a build has no CUDA kernels). None when no
    extension is loaded; "unknown" for a library built before it recorded this."""
    if _module is None:
        return None
    return {
        "torch": getattr(_module, "built_for_torch", "unknown"),
        "cxx": getattr(_module, "built_with_cxx", "unknown"),
        "cuda": getattr(_module, "built_with_cuda", "unknown"),
        "cuda_archs": getattr(_module, "built_for_cuda_archs", "unknown"),
        "no_cuda_reason": getattr(_module, "built_without_cuda_because", "unknown"),
    }
