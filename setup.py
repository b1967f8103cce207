"""Build of fasa_fast and its one extension, ``fasa_fast._C``.

- The C++ CPU kernels (``csrc/*.cpp``, ``csrc/cpu/``) are always built.
- The CUDA kernels (``csrc/cuda/*.cu``) are built whenever torch is a CUDA build and a CUDA
  toolkit is found, GPU or not (the decision never asks ``torch.cuda.is_available()``).
  ``FORCE_CUDA=1`` makes a missing toolkit an error; ``FORCE_CUDA=0`` skips CUDA.
  With no GPU visible and ``TORCH_CUDA_ARCH_LIST`` unset, the arch list defaults to Hopper.
- The Triton kernels in ``kernels/`` ship as the subpackage ``fasa_fast.kernels``.

``pip install -e . --no-build-isolation`` (what ``scripts/setup_env.sh`` runs) rebuilds it.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from setuptools import find_packages, setup

ROOT = Path(__file__).resolve().parent
DEFAULT_CUDA_ARCH_LIST = "9.0"


def log(msg: str) -> None:
    print(f"[fasa_fast setup] {msg}", file=sys.stderr)


def real_cuda_home() -> str | None:
    """The CUDA toolkit root, asking nvcc itself where it lives.

    torch guesses ``CUDA_HOME`` as ``dirname(dirname(which nvcc))``, which is wrong when ``nvcc``
    on PATH is a wrapper script (``/usr/local/bin/nvcc`` -> ``/usr/local``). ``nvcc -dryrun``
    prints the real ``_HERE_`` (its bin directory).
    """
    if os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH"):
        return os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH")
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        return "/usr/local/cuda" if os.path.exists("/usr/local/cuda/bin/nvcc") else None
    try:
        out = subprocess.run(
            [nvcc, "-dryrun", "-c", "-x", "cu", os.devnull, "-o", os.devnull],
            capture_output=True,
            text=True,
            timeout=60,
        )
        match = re.search(r"_HERE_=(\S+)", out.stdout + out.stderr)
    except (OSError, subprocess.SubprocessError):
        match = None
    bindir = match.group(1) if match else os.path.dirname(os.path.realpath(nvcc))
    return str(Path(bindir).resolve().parent)


def want_cuda(torch) -> bool:
    force = os.environ.get("FORCE_CUDA")
    if force == "0":
        log("FORCE_CUDA=0: building the CPU kernels only")
        return False
    reason = None
    if torch.version.cuda is None:
        reason = f"torch {torch.__version__} is not a CUDA build"
    else:
        from torch.utils.cpp_extension import CUDA_HOME

        if CUDA_HOME is None or not os.path.exists(os.path.join(CUDA_HOME, "bin", "nvcc")):
            reason = f"no CUDA toolkit found (CUDA_HOME={CUDA_HOME})"
    if reason is None:
        return True
    if force == "1":
        raise RuntimeError(f"FORCE_CUDA=1 but the CUDA kernels cannot be built: {reason}")
    log(f"building the CPU kernels only: {reason}")
    return False


def default_arch_list(torch) -> None:
    """With no GPU to ask and no TORCH_CUDA_ARCH_LIST, build for Hopper (H100/H200)."""
    if not os.environ.get("TORCH_CUDA_ARCH_LIST") and not torch.cuda.is_available():
        os.environ["TORCH_CUDA_ARCH_LIST"] = DEFAULT_CUDA_ARCH_LIST
        log(f"no GPU visible: TORCH_CUDA_ARCH_LIST defaults to {DEFAULT_CUDA_ARCH_LIST}")


def extensions() -> list:
    cuda_home = real_cuda_home()
    if cuda_home:
        os.environ["CUDA_HOME"] = cuda_home  # read by torch.utils.cpp_extension at import
    import torch
    from torch.utils.cpp_extension import CppExtension, CUDAExtension

    sources = sorted(glob.glob("csrc/*.cpp") + glob.glob("csrc/cpu/*.cpp"))
    # Without ninja (which tracks headers itself) build_ext skips an extension whose sources are
    # all older than it: a change to a header alone (the CUDA kernels live in csrc/cuda/*.cuh)
    # would rebuild nothing.
    depends = sorted(glob.glob("csrc/*.h") + glob.glob("csrc/cuda/*.cuh"))
    # OpenMP: at::parallel_for is inline and runs serially unless the extension itself is
    # compiled with it. No errno from libm lets sqrt vectorise.
    cxx_flags = ["-O3", "-fopenmp", "-fno-math-errno"]
    link_flags = ["-fopenmp"]
    if want_cuda(torch):
        default_arch_list(torch)
        log(f"building CUDA kernels with {cuda_home} for {os.environ.get('TORCH_CUDA_ARCH_LIST')}")
        sources += sorted(glob.glob("csrc/cuda/*.cu"))
        return [
            CUDAExtension(
                "fasa_fast._C",
                sources,
                depends=depends,
                extra_compile_args={"cxx": cxx_flags, "nvcc": ["-O3", "-lineinfo"]},
                extra_link_args=link_flags,
            )
        ]
    return [
        CppExtension(
            "fasa_fast._C",
            sources,
            depends=depends,
            extra_compile_args={"cxx": cxx_flags},
            extra_link_args=link_flags,
        )
    ]


def build_ext_class():
    from torch.utils.cpp_extension import BuildExtension

    return BuildExtension.with_options(use_ninja=shutil.which("ninja") is not None)


# setuptools executes this file as __main__; tests import it to check the helpers above.
if __name__ == "__main__":
    setup(
        name="fasa_fast",
        version="0.1.0",
        description="Fast FASA (feature augmentation and sampling adaptation) for long-tailed "
        "instance segmentation",
        packages=find_packages(include=["fasa_fast", "fasa_fast.*"]) + ["fasa_fast.kernels"],
        package_dir={"fasa_fast.kernels": "kernels"},
        # The oldest pair tested (`make oldest`, requirements/oldest.txt): Python 3.10, torch
        # 2.6 with its triton 3.2. torch 2.4 runs everything but the Triton kernels (its triton
        # 3.0 rejects them; the backend then stays off: ops._library.MIN_TRITON).
        python_requires=">=3.10",
        install_requires=["torch>=2.6", "numpy", "scikit-learn"],
        # FASA_FAST_PREBUILT=1: the compiled fasa_fast/_C*.so is in place already (the twin
        # check restores it from its cache, keyed by the hash of every source): install the
        # package without compiling it again.
        ext_modules=[] if os.environ.get("FASA_FAST_PREBUILT") == "1" else extensions(),
        cmdclass={"build_ext": build_ext_class()},
        zip_safe=False,
    )
