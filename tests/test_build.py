"""setup.py's build decisions, exercised without compiling anything."""

from __future__ import annotations

import importlib.util
import os
import shutil
import types
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def setup_module():
    spec = importlib.util.spec_from_file_location("fasa_fast_setup", ROOT / "setup.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # not __main__: setup() is not called
    return module


def fake_torch(cuda_version, gpu=False):
    return types.SimpleNamespace(
        __version__="0.0",
        version=types.SimpleNamespace(cuda=cuda_version),
        cuda=types.SimpleNamespace(is_available=lambda: gpu),
    )


def test_force_cuda_1_fails_loudly_without_cuda(setup_module, monkeypatch):
    monkeypatch.setenv("FORCE_CUDA", "1")
    with pytest.raises(RuntimeError, match="FORCE_CUDA=1 but the CUDA kernels cannot be built"):
        setup_module.want_cuda(fake_torch(None))


def test_force_cuda_0_skips(setup_module, monkeypatch):
    monkeypatch.setenv("FORCE_CUDA", "0")
    assert setup_module.want_cuda(fake_torch("13.0")) is False


def test_cpu_torch_builds_cpu_only(setup_module, monkeypatch):
    monkeypatch.delenv("FORCE_CUDA", raising=False)
    assert setup_module.want_cuda(fake_torch(None)) is False


def test_arch_list_defaults_to_hopper_without_gpu(setup_module, monkeypatch):
    monkeypatch.delenv("TORCH_CUDA_ARCH_LIST", raising=False)
    setup_module.default_arch_list(fake_torch("13.0", gpu=False))
    assert "9.0" in os.environ["TORCH_CUDA_ARCH_LIST"].split(";")
    monkeypatch.setenv("TORCH_CUDA_ARCH_LIST", "8.0")
    setup_module.default_arch_list(fake_torch("13.0", gpu=False))
    assert os.environ["TORCH_CUDA_ARCH_LIST"] == "8.0"  # a user's choice is kept


def test_cuda_home_found_through_nvcc_wrapper(setup_module, monkeypatch):
    if shutil.which("nvcc") is None:
        pytest.skip("no nvcc on PATH")
    monkeypatch.delenv("CUDA_HOME", raising=False)
    monkeypatch.delenv("CUDA_PATH", raising=False)
    home = setup_module.real_cuda_home()
    assert home is not None
    assert Path(home, "bin", "nvcc").is_file()
    assert Path(home, "include", "cuda_runtime.h").is_file()  # a toolkit root, not /usr/local
