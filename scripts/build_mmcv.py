"""Build (once) and install mmcv with its compiled ops into the running interpreter's env.

mmcv 2.1.0 is the newest mmcv that mmdet 3.3.0 accepts, and PyPI ships it only as an sdist.
Its ``setup.py`` hard-codes ``-std=c++17``; torch >= 2.14 refuses anything below C++20
(``ATen/ATen.h`` says so with an ``#error``). When — and only when — the installed torch's
headers demand C++20, this script raises mmcv's flag to C++20; nothing else is changed.

The built wheel is cached outside the repo (``$FASA_FAST_CACHE`` or ``~/.cache/fasa_fast``),
keyed by mmcv version, torch version and the C++ standard, so a fresh clone (CI) reuses it and
only a fresh machine pays the ~6 minute build on 2 cores (with -g0; see below).

Usage: ``.venv/bin/python scripts/build_mmcv.py [--version 2.1.0]``

``--cuda-arch 9.0 --wheel-dir .whl`` builds, in the running env, a wheel with mmcv's CUDA ops as
well (``FORCE_CUDA=1``: no GPU is needed to compile) and only copies it to ``--wheel-dir``: the
lent GPU machine's image has no mmcv and cannot build it in its time budget, so
``scripts/gpu_mmdet_wheels.sh`` builds it here, in the twin of that image (``.venv-gpu-twin``).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import tempfile
from pathlib import Path


def cache_root() -> Path:
    env = os.environ.get("FASA_FAST_CACHE")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME", str(Path.home() / ".cache"))
    return Path(xdg) / "fasa_fast"


def torch_needs_cxx20() -> bool:
    """True when the installed torch's own headers refuse a pre-C++20 compiler."""
    import torch

    aten = Path(torch.__file__).parent / "include" / "ATen" / "ATen.h"
    return aten.is_file() and "C++20 or later" in aten.read_text()


def patch_cxx_standard(setup_py: Path) -> int:
    """Raise mmcv's hard-coded ``c++17`` flags to ``c++20``; returns how many were changed."""
    text = setup_py.read_text()
    new, count = re.subn(r"([-/]std[=:])c\+\+17", r"\1c++20", text)
    if count == 0:
        raise RuntimeError(f"no -std=c++17 flag found in {setup_py}; the mmcv sdist changed")
    setup_py.write_text(new)
    return count


def toolkit_root() -> Path:
    """The CUDA toolkit nvcc belongs to. torch guesses ``dirname(dirname(which nvcc))``, wrong
    when ``nvcc`` on PATH is a wrapper script (this machine's ``/usr/local/bin/nvcc``); nvcc's
    dry run prints its real bin directory (setup.py asks it the same way)."""
    if os.environ.get("CUDA_HOME"):
        return Path(os.environ["CUDA_HOME"])
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        raise SystemExit("[build_mmcv] --cuda-arch: no nvcc on PATH and no CUDA_HOME")
    dry = subprocess.run(
        [nvcc, "-dryrun", "-c", "-x", "cu", os.devnull, "-o", os.devnull],
        capture_output=True, text=True,
    )  # fmt: skip
    match = re.search(r"_HERE_=(\S+)", dry.stdout + dry.stderr)
    return Path(match.group(1)).resolve().parent if match else Path(nvcc).resolve().parents[1]


def library_headers(toolkit: Path, into: Path) -> Path:
    """A folder of links to the CUDA library headers (``cusparse.h``, ``cublas_v2.h``, ...) that
    torch's CUDA wheels install as ``nvidia-*`` packages and ``toolkit`` lacks: ATen's CUDA
    headers include them. Only missing headers are linked, so none of the toolkit's own is
    shadowed by another release's."""
    import site

    into.mkdir(parents=True, exist_ok=True)
    for root in (Path(p) / "nvidia" for p in site.getsitepackages()):
        for item in sorted(root.glob("*/include/*")) if root.is_dir() else []:
            if not (toolkit / "include" / item.name).exists() and not (into / item.name).exists():
                (into / item.name).symlink_to(item)
    return into


def pip(*args: str, env: dict[str, str] | None = None, cwd: str | None = None) -> None:
    subprocess.run([sys.executable, "-m", "pip", *args], check=True, env=env, cwd=cwd)


def mmcv_installed_with_ops(version: str) -> bool:
    code = f"import mmcv, mmcv.ops, sys; sys.exit(0 if mmcv.__version__ == {version!r} else 1)"
    return subprocess.run([sys.executable, "-c", code], capture_output=True).returncode == 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--version", default="2.1.0")
    parser.add_argument(
        "--cuda-arch", default=None, help="also compile the CUDA ops for these archs (e.g. 9.0)"
    )
    parser.add_argument(
        "--wheel-dir", default=None, help="copy the wheel here instead of installing it"
    )
    args = parser.parse_args()

    if args.wheel_dir is None and mmcv_installed_with_ops(args.version):
        print(f"[build_mmcv] mmcv {args.version} with ops already installed")
        return 0

    import torch

    cxx20 = torch_needs_cxx20()
    tag = f"mmcv-{args.version}_torch-{torch.__version__}_{'cxx20' if cxx20 else 'stock'}"
    tag += f"_{sysconfig.get_platform()}_py{sys.version_info.major}{sys.version_info.minor}"
    if args.cuda_arch:
        tag += f"_cuda-{args.cuda_arch.replace(';', '-')}"
    wheel_dir = cache_root() / "wheels" / tag
    wheels = sorted(wheel_dir.glob("mmcv-*.whl")) if wheel_dir.is_dir() else []
    if not wheels:
        with tempfile.TemporaryDirectory(prefix="mmcv-build-") as tmp:
            # Preparing the sdist's metadata runs its setup.py, which imports pkg_resources:
            # do it with this env's setuptools (< 81), not an isolated latest one.
            pip(
                "download", "--no-deps", "--no-build-isolation", "--no-binary", ":all:",
                f"mmcv=={args.version}", "-d", tmp,
            )  # fmt: skip
            (sdist,) = Path(tmp).glob("mmcv-*.tar.gz")
            with tarfile.open(sdist) as tar:
                tar.extractall(tmp, filter="data")
            src = Path(tmp) / f"mmcv-{args.version}"
            if cxx20:
                n = patch_cxx_standard(src / "setup.py")
                print(
                    f"[build_mmcv] torch needs C++20: raised {n} c++17 flag(s) in mmcv's setup.py"
                )
            env = dict(os.environ)
            env["MMCV_WITH_OPS"] = "1"
            env.pop("FORCE_CUDA", None)  # our own FORCE_CUDA must not switch mmcv to CUDA ops
            if args.cuda_arch:
                env.update(FORCE_CUDA="1", TORCH_CUDA_ARCH_LIST=args.cuda_arch)
                toolkit = toolkit_root()
                extra = library_headers(toolkit, Path(tmp) / "cuda-library-headers")
                env["CUDA_HOME"] = str(toolkit)
                env["CPATH"] = os.pathsep.join(filter(None, [str(extra), env.get("CPATH")]))
                flags = f"{env.get('NVCC_APPEND_FLAGS', '')} -I{extra}".strip()
                env["NVCC_APPEND_FLAGS"] = flags
            env.setdefault("MAX_JOBS", str(os.cpu_count() or 2))
            # Python's own CFLAGS carry -g: debug info for torch's headers nearly doubles the
            # compile time of each source (one torch-including source: 12.0 s with -g, 7.1 s
            # with -g0, g++ 12 -O3) and nobody debugs mmcv's ops here. Last flag wins.
            env["CFLAGS"] = f"{env.get('CFLAGS', '')} -g0".strip()
            out = Path(tmp) / "dist"
            print(
                "[build_mmcv] building mmcv ops (about 6 minutes on 2 idle cores, once per machine)"
            )
            pip("wheel", "--no-build-isolation", "--no-deps", "-w", str(out), str(src), env=env)
            wheel_dir.mkdir(parents=True, exist_ok=True)
            for whl in out.glob("mmcv-*.whl"):
                shutil.copy2(whl, wheel_dir / whl.name)
        wheels = sorted(wheel_dir.glob("mmcv-*.whl"))
    if args.wheel_dir is not None:
        Path(args.wheel_dir).mkdir(parents=True, exist_ok=True)
        shutil.copy2(wheels[-1], Path(args.wheel_dir) / wheels[-1].name)
        print(f"[build_mmcv] {wheels[-1].name} -> {args.wheel_dir}")
        return 0
    pip("install", "--no-deps", "--force-reinstall", str(wheels[-1]))
    if not mmcv_installed_with_ops(args.version):
        raise SystemExit("[build_mmcv] mmcv installed but `import mmcv.ops` fails")
    print(f"[build_mmcv] installed {wheels[-1].name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
