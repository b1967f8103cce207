"""Which (device, backend) pairs can run in this process, for parametrising op tests."""

from __future__ import annotations

import importlib
import sys
import types
from pathlib import Path

import pytest
import torch

from fasa_fast.ops import _library

REPO = Path(__file__).resolve().parents[1]


def in_pinned_env() -> bool:
    """Whether this interpreter is the project's pinned environment (``.venv``, ``make env``).

    There every optional piece (triton, mmdet, mmcv, lvis) is installed, so a missing one is a
    broken environment and must fail, not skip.
    """
    return Path(sys.prefix).resolve() == (REPO / ".venv").resolve()


def need(name: str) -> types.ModuleType:
    """Import an optional package: in the pinned ``.venv`` a missing one fails the test (the
    environment is broken); elsewhere (e.g. the GPU machine's twin, which has no mmdet or
    matplotlib) the test is skipped with the reason."""
    if in_pinned_env():
        return importlib.import_module(name)
    return pytest.importorskip(name, reason=f"{name} cannot be imported (outside the pinned .venv)")


def backend_params() -> list:
    params = []
    for device in ("cpu", "cuda"):
        for backend in _library.BACKENDS:
            marks = []
            if device == "cuda":
                marks.append(pytest.mark.cuda)
            available = backend in _library.available_backends(device)
            if backend == "native" and not available:
                marks.append(pytest.mark.skip(reason=f"extension has no {device} kernels"))
            # in .venv the test runs and fails ("backend 'triton' needs the triton package")
            if backend == "triton" and not available and not in_pinned_env():
                marks.append(pytest.mark.skip(reason=TRITON_OFF))
            params.append(pytest.param((device, backend), marks=marks, id=f"{device}-{backend}"))
    return params


def cuda_backend_params() -> list:
    """The CUDA entries of ``backend_params``: for ``device_backend`` parametrised indirectly by
    tests of shapes too large to be worth running on the CPU backends (those run the CUDA
    kernels' large-shape paths; the CPU emulation covers them without a GPU)."""
    return [p for p in backend_params() if p.id.startswith("cuda-")]


TRITON_OFF = "Triton backend off: triton not installed, or older than ops._library.MIN_TRITON"


def cpu_property_backends() -> list[str]:
    """The CPU backends a property test draws from: native when the extension is loaded, Triton
    when it can run (always in the pinned ``.venv``, where a missing one must fail)."""
    return [
        b
        for b in _library.BACKENDS
        if (b != "native" or _library.native_available("cpu"))
        and (b != "triton" or _library.triton_available() or in_pinned_env())
    ]


# torch < 2.4 has no torch.library.opcheck and no register_fake (the ops get a Meta kernel
# there instead, ops._library): opcheck and torch.compile of the ops are tested from 2.4 on.
needs_opcheck = pytest.mark.skipif(
    not hasattr(torch.library, "opcheck"), reason="torch.library.opcheck needs torch >= 2.4"
)
needs_compile_support = pytest.mark.skipif(
    not _library.HAS_REGISTER_FAKE,
    reason="torch.compile of the fasa_fast ops needs torch >= 2.4 (torch.library.register_fake)",
)
