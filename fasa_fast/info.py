"""``python -m fasa_fast.info``: what this installation of fasa_fast can do, and why.

The first thing to run after installing, and what to paste into a bug report: Python, torch,
CUDA and Triton versions; whether the compiled extension loaded (and why not), what it was built
against and for which devices and CUDA architectures it carries kernels; which backend serves
each op on each device type, and which backends could. ``--json`` prints the same as JSON.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import platform
import sys
from typing import Any

import torch

import fasa_fast
from fasa_fast import _extension
from fasa_fast.ops import _library
from fasa_fast.ops._registry import NAMESPACE, OPS

# Packages an MMDetection user's report needs besides torch; read from their metadata only, so
# a broken mmcv cannot stop this report.
RELATED_PACKAGES = ("triton", "numpy", "mmcv", "mmengine", "mmdet", "lvis", "pycocotools")


def _package_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _triton_status() -> str:
    """Why the Triton backend can or cannot run here (``_library.triton_available``'s terms)."""
    version = _package_version("triton")
    if version is None:
        return "off: triton is not installed"
    if _library._version_tuple(version) < _library.MIN_TRITON:
        minimum = ".".join(map(str, _library.MIN_TRITON))
        return f"off: triton {version} is older than {minimum}, which the kernels need"
    if not _library.triton_available():
        return "off: the fasa_fast.kernels package is missing (install with `pip install -e .`)"
    return f"on (triton {version}; on CPU only under TRITON_INTERPRET=1)"


def _native_devices() -> dict[str, bool]:
    """Per device type, whether the extension carries kernels for it: CPU kernels are always
    compiled; CUDA kernels when it was built with a toolkit (its recorded CUDA release)."""
    build = _extension.build_info()
    if build is None:
        return {"cpu": False, "cuda": False}
    if build["cuda"] == "unknown":  # a library from before the build recorded it
        return {device: _library.native_available(device) for device in _library.DEVICE_TYPES}
    return {"cpu": True, "cuda": bool(build["cuda"])}


def collect() -> dict[str, Any]:
    """Everything the report shows, as plain data."""
    devices = []
    if torch.cuda.is_available():
        for index in range(torch.cuda.device_count()):
            major, minor = torch.cuda.get_device_capability(index)
            devices.append(
                {
                    "index": index,
                    "name": torch.cuda.get_device_name(index),
                    "arch": f"sm_{major}{minor}",
                }
            )
    build = _extension.build_info()
    return {
        "fasa_fast": {"version": fasa_fast.__version__, "path": fasa_fast.__path__[0]},
        "python": {"version": platform.python_version(), "executable": sys.executable},
        "platform": platform.platform(),
        "torch": {
            "version": torch.__version__,
            "cuda": torch.version.cuda,
            "cuda_available": torch.cuda.is_available(),
            "devices": devices,
            "compile_support": _library.HAS_REGISTER_FAKE,
        },
        "packages": {name: _package_version(name) for name in RELATED_PACKAGES},
        "extension": {
            "loaded": _extension.extension_loaded(),
            "error": _extension.extension_error(),
            "path": _extension.extension_path(),
            "built_for": build,
            "kernels": _native_devices(),
        },
        "triton_backend": _triton_status(),
        "backends": {
            device: {
                "active": _library.get_backend(device),
                "available": _library.available_backends(device),
            }
            for device in _library.DEVICE_TYPES
        },
        "ops": sorted(OPS),
    }


def format_report(info: dict[str, Any]) -> str:
    """The human-readable report of ``collect()``."""
    torch_info, ext = info["torch"], info["extension"]
    lines = [
        f"fasa_fast {info['fasa_fast']['version']} ({info['fasa_fast']['path']})",
        f"python    {info['python']['version']} ({info['python']['executable']})",
        f"platform  {info['platform']}",
        f"torch     {torch_info['version']} (CUDA {torch_info['cuda'] or 'none: a CPU build'})",
    ]
    if torch_info["devices"]:
        for device in torch_info["devices"]:
            lines.append(f"  cuda:{device['index']}  {device['name']} ({device['arch']})")
    else:
        lines.append("  no CUDA device visible")
    compile_note = (
        "yes"
        if torch_info["compile_support"]
        else "no (needs torch >= 2.4: torch.library.register_fake)"
    )
    lines.append(f"  torch.compile of the fasa_fast ops: {compile_note}")
    packages = ", ".join(
        f"{name} {version or 'not installed'}" for name, version in info["packages"].items()
    )
    lines.append(f"packages  {packages}")
    if ext["loaded"]:
        built = ext["built_for"]
        lines.append(f"extension loaded ({ext['path']})")
        lines.append(f"  built for torch {built['torch']} with -std={built['cxx']}")
        if built["torch"] not in ("unknown", torch_info["version"]):
            lines.append(
                f"  WARNING: built for torch {built['torch']}, running {torch_info['version']}: "
                "rebuild with `pip install -e .`"
            )
        if built["cuda"]:
            lines.append(
                f"  CUDA kernels: compiled with CUDA {built['cuda']} for archs "
                f"{built['cuda_archs'] or 'torch default'}"
            )
        else:
            lines.append(f"  CUDA kernels: none (a CPU-only build: {built['no_cuda_reason']})")
    else:
        lines.append(f"extension NOT loaded: {ext['error']}")
        lines.append("  every op runs on the pure-PyTorch reference or Triton kernels")
    kernels = ", ".join(f"{dev} {'yes' if has else 'no'}" for dev, has in ext["kernels"].items())
    lines.append(f"  native kernels per device type: {kernels}")
    lines.append(f"triton backend: {info['triton_backend']}")
    lines.append("backends (every op on a device type uses the same one):")
    for device, backends in info["backends"].items():
        lines.append(
            f"  {device:<5} active: {backends['active']:<10} available: "
            + ", ".join(backends["available"])
        )
    lines.append("ops: " + ", ".join(f"{NAMESPACE}::{name}" for name in info["ops"]))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m fasa_fast.info", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)
    info = collect()
    print(json.dumps(info, indent=2) if args.json else format_report(info))
    return 0


if __name__ == "__main__":
    sys.exit(main())
