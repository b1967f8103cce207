"""Which (device, backend) pairs can run in this process, for parametrising op tests."""

from __future__ import annotations

import pytest

from fasa_fast.ops import _library


def backend_params() -> list:
    params = []
    for device in ("cpu", "cuda"):
        for backend in _library.BACKENDS:
            marks = []
            if device == "cuda":
                marks.append(pytest.mark.cuda)
            if backend == "native" and not _library.native_available(device):
                marks.append(pytest.mark.skip(reason=f"extension has no {device} kernels"))
            if backend == "triton" and not _library.triton_available():
                marks.append(pytest.mark.skip(reason="triton not installed"))
            params.append(pytest.param((device, backend), marks=marks, id=f"{device}-{backend}"))
    return params
