"""The CUDA kernels built as the mainstream MMDetection stack builds them: a CUDA 12 torch
(2.1.2+cu121) and a CUDA 12 nvcc, here the toolkit ``scripts/fetch_cuda12.sh`` assembles.

``FASA_FAST_CUDA12_HOME`` names that toolkit (``FASA_FAST_CUDA12_HOME=$(bash
scripts/fetch_cuda12.sh)``); without it, or under a torch that is not a CUDA 12 build, the module
is skipped. A wheel is built from a clean copy of the checkout (``pip wheel
--no-build-isolation``, ``FORCE_CUDA=1``, ``TORCH_CUDA_ARCH_LIST=9.0``; minutes on 2 cores) and
checked two ways: the sm_90 cubins in its library, one per ``csrc/cuda/*.cu``, as ``cuobjdump``
lists them, and what the library says it was built against once installed in a throwaway venv
over this torch. No GPU is needed.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch

from tests.venvs import checkout, user_env

ROOT = Path(__file__).resolve().parents[1]
TOOLKIT = os.environ.get("FASA_FAST_CUDA12_HOME", "")
ARCH = "9.0"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not TOOLKIT,
        reason="compiles the CUDA kernels with a CUDA 12 toolkit: set FASA_FAST_CUDA12_HOME "
        "(FASA_FAST_CUDA12_HOME=$(bash scripts/fetch_cuda12.sh))",
    ),
    pytest.mark.skipif(
        (torch.version.cuda or "").split(".")[0] != "12",
        reason=f"needs a CUDA 12 build of torch, this is {torch.__version__} "
        f"(CUDA {torch.version.cuda})",
    ),
]


def nvcc_release(cuda_home: Path) -> str:
    out = subprocess.run(
        [cuda_home / "bin" / "nvcc", "--version"], capture_output=True, text=True, check=True
    ).stdout
    return re.search(r"release (\d+\.\d+)", out).group(1)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("cuda12")
    src = checkout(tmp)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "PYTHON"))}
    # make mainstream builds CPU-only (FORCE_CUDA=0): this build must have its CUDA kernels
    env.update(CUDA_HOME=TOOLKIT, FORCE_CUDA="1", TORCH_CUDA_ARCH_LIST=ARCH)
    env.pop("CUDA_PATH", None)
    out = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-build-isolation", "--no-deps",
         "-w", str(tmp / "wheels"), str(src)],
        capture_output=True, text=True, cwd=tmp, env=env, timeout=3600,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-6000:]
    (whl,) = (tmp / "wheels").glob("fasa_fast-*.whl")
    return whl


def test_wheel_has_sm90_cubins_for_every_kernel_file(wheel, tmp_path):
    with zipfile.ZipFile(wheel) as zf:
        (lib,) = [n for n in zf.namelist() if re.fullmatch(r"fasa_fast/_C\..*\.so", n)]
        zf.extract(lib, tmp_path)
    listing = subprocess.run(
        [Path(TOOLKIT) / "bin" / "cuobjdump", "--list-elf", tmp_path / lib],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    cubins = sorted(re.findall(r"ELF file\s+\d+:\s+(\S+)", listing))
    sm = "sm_" + ARCH.replace(".", "")
    expected = sorted(f"{p.stem}.{sm}.cubin" for p in (ROOT / "csrc" / "cuda").glob("*.cu"))
    assert expected and cubins == expected, listing


def test_installed_wheel_reports_cuda12_kernels_built_for_this_torch(wheel, tmp_path):
    python = user_env(tmp_path)
    out = subprocess.run(
        [python, "-m", "pip", "install", "--no-deps", "--no-index", str(wheel)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-4000:]
    # from outside the checkout, so the installed package is the one imported
    info = subprocess.run(
        [python, "-m", "fasa_fast.info", "--json"],
        capture_output=True, text=True, cwd=tmp_path, timeout=300,
    )  # fmt: skip
    assert info.returncode == 0, info.stderr[-4000:]
    got = json.loads(info.stdout)
    ext = got["extension"]
    assert ext["loaded"], ext["error"]
    assert Path(ext["path"]).resolve().is_relative_to(tmp_path.resolve()), ext["path"]
    assert got["torch"]["version"] == torch.__version__
    assert ext["built_for"]["torch"] == torch.__version__, ext
    assert ext["built_for"]["cuda"] == nvcc_release(Path(TOOLKIT)), ext
    assert ext["built_for"]["cuda"].split(".")[0] == "12", ext
    assert ext["built_for"]["cuda_archs"] == ARCH, ext
    assert ext["kernels"]["cuda"] is True, ext
