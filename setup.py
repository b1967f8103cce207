"""Build of fasa_fast and its one extension, ``fasa_fast._C``.

- The C++ CPU kernels (``csrc/*.cpp``, ``csrc/cpu/``) are always built.
- The CUDA kernels (``csrc/cuda/*.cu``) are built whenever torch is a CUDA build and a CUDA
  toolkit is found, GPU or not (the decision never asks ``torch.cuda.is_available()``).
  ``FORCE_CUDA=1`` makes a missing toolkit an error; ``FORCE_CUDA=0`` skips CUDA.
  With no GPU visible and ``TORCH_CUDA_ARCH_LIST`` unset, the arch list defaults to Hopper.
- The Triton kernels in ``kernels/`` ship as the subpackage ``fasa_fast.kernels``.

The extension is compiled against the torch of the environment being installed into, never
against one pip fetches: ``pyproject.toml`` lists no torch among the build requirements, and under
pip's build isolation (plain ``pip install -e .`` / ``pip install .``) ``environment_torch``
finds the target environment's own torch. No torch there stops the build at once with the
command to run. ``pip install -e . --no-build-isolation`` (what ``scripts/setup_env.sh`` runs)
builds the same way without the isolated step.
"""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from setuptools import find_packages, setup

ROOT = Path(__file__).resolve().parent
DEFAULT_CUDA_ARCH_LIST = "9.0"
# The torch releases this package supports (docs/install.md: what runs on each, where tested).
# 2.1 is the oldest: MMDetection 3.3's prebuilt mmcv 2.1.0 wheels stop there. 2.14 is the newest
# the package index resolves; the next release is admitted once it is tested.
TORCH_REQUIREMENT = "torch>=2.1,<2.15"
TORCH_RANGE = ((2, 1), (2, 15))  # the same range as (major, minor) bounds, for the check below


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


def environment_sys_path() -> list[str]:
    """``sys.path`` of the environment being installed into, as its interpreter sees it.

    pip's build isolation runs this file with the target interpreter but hides that
    environment's site-packages (``PYTHONPATH`` points at a ``sitecustomize`` that drops them,
    ``PYTHONNOUSERSITE`` hides the user site); the same interpreter started without those two
    variables sees them again.
    """
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONNOUSERSITE")}
    out = subprocess.run(
        [sys.executable, "-c", "import json, sys; print(json.dumps(sys.path))"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def environment_torch():
    """The torch to compile against: the one importable here (``--no-build-isolation``), else,
    under build isolation, the target environment's own (its paths go *after* the isolated
    ones, so the build tools stay the isolated ones). Never a torch installed for the build."""
    try:
        import torch

        return torch
    except ImportError:
        pass
    extra = [p for p in environment_sys_path() if p and p not in sys.path]
    sys.path.extend(extra)
    try:
        import torch
    except ImportError:
        raise SystemExit(
            "[fasa_fast setup] fasa_fast compiles its extension against the torch installed in "
            f"the target environment ({sys.prefix}), and there is none. Install torch first "
            f"(any release in '{TORCH_REQUIREMENT}', e.g. `pip install torch` or the build "
            "your MMDetection stack uses), then run `pip install -e .` again."
        ) from None
    log(
        f"build isolation: compiling against the environment's torch {torch.__version__} ({torch.__file__})"
    )
    return torch


def check_torch_version(version: str) -> None:
    """Stop before pip resolves anything when the environment's torch is out of range: pip would
    otherwise replace it to satisfy ``TORCH_REQUIREMENT`` (and break what was built for it)."""
    release = tuple(int(p) for p in re.findall(r"\d+", version.split("+")[0])[:2])
    low, high = TORCH_RANGE
    if not low <= release < high:
        raise SystemExit(
            f"[fasa_fast setup] torch: expected a release in '{TORCH_REQUIREMENT}', got "
            f"{version} in {sys.prefix}. fasa_fast does not replace an installed torch; install "
            "a supported one first (docs/install.md lists them)."
        )


def cxx_standard(torch) -> str:
    """The C++ standard torch's own headers need: C++20 where ``ATen/ATen.h`` refuses anything
    older (torch >= 2.14), else C++17 (torch 2.1 to 2.13)."""
    aten = Path(torch.__file__).parent / "include" / "ATen" / "ATen.h"
    return "c++20" if aten.is_file() and "C++20 or later" in aten.read_text() else "c++17"


def pkg_resources_compat() -> None:
    """torch < 2.2's ``cpp_extension`` runs ``from pkg_resources import packaging``, which
    setuptools >= 70 (the isolated build's) no longer provides: hand it ``packaging`` itself."""
    try:
        import pkg_resources
    except ImportError:
        return
    if not hasattr(pkg_resources, "packaging"):
        import packaging.version

        pkg_resources.packaging = packaging


def toolkit_version(cuda_home: str) -> str | None:
    """The release of the nvcc in ``cuda_home`` (``"13.0"``), or None when it cannot say."""
    try:
        out = subprocess.run(
            [os.path.join(cuda_home, "bin", "nvcc"), "--version"],
            capture_output=True,
            text=True,
            timeout=60,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r"release (\d+\.\d+)", out)
    return match.group(1) if match else None


# Why the last want_cuda() said no (compiled into the library: `python -m fasa_fast.info`).
NO_CUDA_REASON = ""


def want_cuda(torch) -> bool:
    global NO_CUDA_REASON
    force = os.environ.get("FORCE_CUDA")
    if force == "0":
        log("FORCE_CUDA=0: building the CPU kernels only")
        NO_CUDA_REASON = "FORCE_CUDA=0"
        return False
    reason = None
    if torch.version.cuda is None:
        reason = f"torch {torch.__version__} is not a CUDA build"
    else:
        from torch.utils.cpp_extension import CUDA_HOME

        if CUDA_HOME is None or not os.path.exists(os.path.join(CUDA_HOME, "bin", "nvcc")):
            reason = f"no CUDA toolkit found (CUDA_HOME={CUDA_HOME})"
        else:
            # torch refuses to compile across CUDA major versions (a cu121 torch, nvcc 13)
            found = toolkit_version(CUDA_HOME)
            if found is not None and found.split(".")[0] != torch.version.cuda.split(".")[0]:
                reason = (
                    f"the CUDA toolkit in {CUDA_HOME} is {found}, torch {torch.__version__} "
                    f"is built for CUDA {torch.version.cuda}: a CUDA {torch.version.cuda.split('.')[0]} "
                    "toolkit is needed (point CUDA_HOME at one)"
                )
    if reason is None:
        return True
    if force == "1":
        raise RuntimeError(f"FORCE_CUDA=1 but the CUDA kernels cannot be built: {reason}")
    log(f"building the CPU kernels only: {reason}")
    NO_CUDA_REASON = reason
    return False


def default_arch_list(torch) -> None:
    """With no GPU to ask and no TORCH_CUDA_ARCH_LIST, build for Hopper (H100/H200)."""
    if not os.environ.get("TORCH_CUDA_ARCH_LIST") and not torch.cuda.is_available():
        os.environ["TORCH_CUDA_ARCH_LIST"] = DEFAULT_CUDA_ARCH_LIST
        log(f"no GPU visible: TORCH_CUDA_ARCH_LIST defaults to {DEFAULT_CUDA_ARCH_LIST}")


def debug_info_flags() -> list[str]:
    """``-g0`` unless the user's own CFLAGS ask for ``-g``.

    Python's CFLAGS carry -g, and debug information for torch's headers nearly doubles each
    source's compile time (12.0 s against 7.1 s for csrc/cpu/fisher_distance.cpp, g++ 12 -O3)
    and adds ~4 MB per object. The extension's flags come after CFLAGS, so they would win.
    """
    return [] if "-g" in os.environ.get("CFLAGS", "").split() else ["-g0"]


def extensions() -> list:
    cuda_home = real_cuda_home()
    if cuda_home:
        os.environ["CUDA_HOME"] = cuda_home  # read by torch.utils.cpp_extension at import
    torch = environment_torch()
    check_torch_version(torch.__version__)
    pkg_resources_compat()
    from torch.utils.cpp_extension import CppExtension, CUDAExtension

    sources = sorted(glob.glob("csrc/*.cpp") + glob.glob("csrc/cpu/*.cpp"))
    # Without ninja (which tracks headers itself) build_ext skips an extension whose sources are
    # all older than it: a change to a header alone (the CUDA kernels live in
    # csrc/cuda/*_device.cuh, their launch geometry in csrc/cuda/launch_geometry.h) would rebuild
    # nothing.
    depends = sorted(
        glob.glob("csrc/*.h") + glob.glob("csrc/cuda/*.h") + glob.glob("csrc/cuda/*.cuh")
    )
    # OpenMP: at::parallel_for is inline and runs serially unless the extension itself is
    # compiled with it. No errno from libm lets sqrt vectorise.
    std = cxx_standard(torch)
    cxx_flags = ["-O3", "-fopenmp", "-fno-math-errno", f"-std={std}"]
    log(f"compiling against torch {torch.__version__} with -std={std}")
    cxx_flags += debug_info_flags()
    link_flags = ["-fopenmp"]
    # provenance compiled into the library (csrc/fasa_ops.cpp; `python -m fasa_fast.info`)
    cxx_flags += [
        f'-DFASA_FAST_BUILD_TORCH="{torch.__version__}"',
        f'-DFASA_FAST_BUILD_CXX="{std}"',
    ]
    if want_cuda(torch):
        default_arch_list(torch)
        archs = os.environ.get("TORCH_CUDA_ARCH_LIST", "")
        log(f"building CUDA kernels with {cuda_home} for {archs}")
        cxx_flags += [
            f'-DFASA_FAST_BUILD_CUDA="{toolkit_version(cuda_home) or torch.version.cuda}"',
            f'-DFASA_FAST_BUILD_CUDA_ARCHS="{archs}"',
        ]
        sources += sorted(glob.glob("csrc/cuda/*.cu"))
        return [
            CUDAExtension(
                "fasa_fast._C",
                sources,
                depends=depends,
                extra_compile_args={"cxx": cxx_flags, "nvcc": ["-O3", "-lineinfo", f"-std={std}"]},
                extra_link_args=link_flags,
            )
        ]
    # the reason goes into a C string literal: no quotes or backslashes in it
    reason = re.sub(r'["\\]', "", NO_CUDA_REASON)
    cxx_flags.append(f'-DFASA_FAST_BUILD_NO_CUDA="{reason}"')
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
    environment_torch()
    pkg_resources_compat()
    from torch.utils.cpp_extension import BuildExtension

    return BuildExtension.with_options(use_ninja=shutil.which("ninja") is not None)


def package_version() -> str:
    """``fasa_fast.__version__``, the one place the version is written (read as text: importing
    the package would load the extension being built)."""
    text = (Path(__file__).resolve().parent / "fasa_fast" / "__init__.py").read_text()
    return re.search(r'^__version__ = "([^"]+)"', text, flags=re.M).group(1)


# setuptools executes this file as __main__; tests import it to check the helpers above.
if __name__ == "__main__":
    setup(
        name="fasa_fast",
        version=package_version(),
        license="Apache-2.0",
        license_files=["LICENSE"],
        description="Fast FASA (feature augmentation and sampling adaptation) for long-tailed "
        "instance segmentation",
        packages=find_packages(include=["fasa_fast", "fasa_fast.*"]) + ["fasa_fast.kernels"],
        package_dir={"fasa_fast.kernels": "kernels"},
        # Tested from Python 3.10 / torch 2.1.2 (requirements/mmdet-torch21.txt) to Python 3.11 /
        # torch 2.14.1 (requirements/env.txt); docs/install.md has the matrix. An installed
        # torch in range is kept as it is: the extension is compiled against it.
        python_requires=">=3.10",
        install_requires=[TORCH_REQUIREMENT, "numpy", "scikit-learn>=1.3"],  # HDBSCAN
        extras_require={
            # The MMDetection 3.3 stack but mmcv, which PyPI has only as an sdist that cannot
            # build in isolation: install OpenMMLab's mmcv 2.1.0 wheel for your torch first (or
            # build it with scripts/build_mmcv.py; docs/install.md).
            "mmdet": ["mmdet>=3.3,<3.4", "mmengine>=0.10,<0.11", "lvis", "pycocotools"],
            "dev": ["pytest", "pytest-benchmark", "hypothesis", "ruff"],
        },
        # FASA_FAST_PREBUILT=1: the compiled fasa_fast/_C*.so is in place already (the twin
        # check restores it from its cache, keyed by the hash of every source): install the
        # package without compiling it again.
        ext_modules=[] if os.environ.get("FASA_FAST_PREBUILT") == "1" else extensions(),
        cmdclass={"build_ext": build_ext_class()},
        zip_safe=False,
    )
