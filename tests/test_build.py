"""setup.py's build decisions, exercised without compiling anything."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
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


def fake_torch_tree(tmp_path, aten_text):
    """A torch whose ``ATen/ATen.h`` holds ``aten_text`` (what cxx_standard reads)."""
    root = tmp_path / "torch"
    (root / "include" / "ATen").mkdir(parents=True)
    (root / "include" / "ATen" / "ATen.h").write_text(aten_text)
    (root / "__init__.py").write_text("")
    return types.SimpleNamespace(__file__=str(root / "__init__.py"))


def test_cxx_standard_follows_torch_headers(setup_module, tmp_path):
    # torch >= 2.14's header refuses older compilers with this #error; 2.1-2.13 need C++17
    cxx20 = '#if __cplusplus < 202002L\n#error "C++20 or later compatible compiler is required"'
    assert setup_module.cxx_standard(fake_torch_tree(tmp_path / "a", cxx20)) == "c++20"
    older = '#if __cplusplus < 201703L\n#error "C++17 or later compatible compiler is required"'
    assert setup_module.cxx_standard(fake_torch_tree(tmp_path / "b", older)) == "c++17"


def test_cxx_standard_of_the_installed_torch(setup_module):
    import torch

    release = tuple(int(p) for p in torch.__version__.split("+")[0].split(".")[:2])
    assert setup_module.cxx_standard(torch) == ("c++20" if release >= (2, 14) else "c++17")


@pytest.mark.parametrize(
    "version, ok",
    [
        ("2.0.1+cu118", False),
        ("2.1.0", True),
        ("2.1.2+cu121", True),
        ("2.6.0", True),
        ("2.14.1+cu130", True),
        ("2.15.0", False),
        ("2.15.0.dev20261201+cpu", False),
        ("3.0.0", False),
    ],
)
def test_torch_outside_the_range_stops_the_build(setup_module, version, ok):
    if ok:
        setup_module.check_torch_version(version)
    else:
        with pytest.raises(
            SystemExit,
            match=f"torch: expected a release in 'torch>=2.1,<2.15', got {re.escape(version)}",
        ):
            setup_module.check_torch_version(version)


def test_declared_range_matches_the_checked_one(setup_module):
    (low, high) = setup_module.TORCH_RANGE
    spec = f"torch>={low[0]}.{low[1]},<{high[0]}.{high[1]}"
    assert setup_module.TORCH_REQUIREMENT == spec


def test_toolkit_version_reads_nvcc(setup_module, tmp_path):
    (tmp_path / "bin").mkdir()
    nvcc = tmp_path / "bin" / "nvcc"
    nvcc.write_text(
        "#!/bin/sh\necho 'nvcc: NVIDIA (R) Cuda compiler driver'\n"
        "echo 'Cuda compilation tools, release 12.1, V12.1.105'\n"
    )
    nvcc.chmod(0o755)
    assert setup_module.toolkit_version(str(tmp_path)) == "12.1"
    assert setup_module.toolkit_version(str(tmp_path / "missing")) is None


def test_toolkit_of_another_cuda_major_builds_cpu_only(setup_module, monkeypatch, tmp_path):
    (tmp_path / "bin").mkdir()
    nvcc = tmp_path / "bin" / "nvcc"
    nvcc.write_text("#!/bin/sh\necho 'Cuda compilation tools, release 13.0, V13.0.88'\n")
    nvcc.chmod(0o755)
    import torch.utils.cpp_extension as cpp_extension

    monkeypatch.setattr(cpp_extension, "CUDA_HOME", str(tmp_path))
    monkeypatch.delenv("FORCE_CUDA", raising=False)
    assert setup_module.want_cuda(fake_torch("12.1")) is False
    assert "is 13.0, torch 0.0 is built for CUDA 12.1" in setup_module.NO_CUDA_REASON
    assert setup_module.want_cuda(fake_torch("13.0")) is True
    monkeypatch.setenv("FORCE_CUDA", "1")
    with pytest.raises(RuntimeError, match="FORCE_CUDA=1 but the CUDA kernels cannot be built"):
        setup_module.want_cuda(fake_torch("12.1"))


def test_environment_sys_path_sees_through_build_isolation(setup_module, monkeypatch, tmp_path):
    # pip's isolation: PYTHONPATH points at a sitecustomize that drops the environment's
    # site-packages, PYTHONNOUSERSITE hides the user site. The environment's own paths must
    # come back regardless.
    import site
    import sys

    (tmp_path / "sitecustomize.py").write_text(
        "import sys\nsys.path[:] = [p for p in sys.path if 'site-packages' not in p]\n"
    )
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    monkeypatch.setenv("PYTHONNOUSERSITE", "1")
    paths = setup_module.environment_sys_path()
    for sitedir in site.getsitepackages():
        assert sitedir in paths
    assert str(tmp_path) not in paths
    assert sys.prefix in " ".join(paths)


def test_debug_info_off_unless_cflags_ask(setup_module, monkeypatch):
    monkeypatch.delenv("CFLAGS", raising=False)
    assert setup_module.debug_info_flags() == ["-g0"]
    monkeypatch.setenv("CFLAGS", "-O2 -ggdb3")  # not the plain -g the docs name
    assert setup_module.debug_info_flags() == ["-g0"]
    monkeypatch.setenv("CFLAGS", "-O2 -g")
    assert setup_module.debug_info_flags() == []


def test_built_library_carries_no_debug_info():
    """The library this interpreter loads was compiled with -g0 (its flags came after Python's
    -g): no DWARF sections. readelf ships with binutils, which the compiler needed."""
    spec = importlib.util.find_spec("fasa_fast._C")
    if spec is None or "-g" in os.environ.get("CFLAGS", "").split():
        pytest.skip("the extension is not built here, or was asked for debug information")
    readelf = shutil.which("readelf")
    assert readelf, "readelf (binutils) not found"
    sections = subprocess.run(
        [readelf, "-S", "-W", spec.origin], capture_output=True, text=True, check=True
    ).stdout
    assert "[" in sections, sections  # readelf listed the section table
    assert ".debug_info" not in sections, f"{spec.origin} carries debug information"
