"""Shared test set-up: Triton runs under its CPU interpreter when no GPU is present (set before
any kernel module is imported), every test starts from a fixed seed."""

import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402

from fasa_fast.ops import _library  # noqa: E402
from tests.backends import backend_params  # noqa: E402


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


def pytest_collection_modifyitems(config, items):
    skip_cuda = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "cuda" in item.keywords and not torch.cuda.is_available():
            item.add_marker(skip_cuda)


@pytest.fixture(params=backend_params())
def device_backend(request):
    """Yields the device string while every fasa_fast op on it runs on the chosen backend."""
    device, backend = request.param
    if device == "cuda" and not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    with _library.use_backend(device, backend):
        yield device
