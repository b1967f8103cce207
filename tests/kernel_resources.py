"""Reading the resources (registers, stack, local and shared memory) of compiled CUDA kernels
from ``cuobjdump --dump-resource-usage``: the parser shared by ``tests/test_kernel_resources.py``
(the extension's kernels) and ``tests/test_triton_aot.py`` (the Triton kernels' cubins)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass

import pytest

ARCH = "sm_90"
SHARED_LIMIT = 48 * 1024  # bytes a block gets without cudaFuncAttributeMaxDynamicSharedMemorySize

_USAGE = re.compile(r"REG:(\d+) STACK:(\d+) SHARED:(\d+) LOCAL:(\d+)")


@dataclass(frozen=True)
class KernelResources:
    name: str
    arch: str | None
    registers: int
    stack: int
    shared: int  # static shared memory, bytes (the cubin's figure, reserved bytes included)
    local: int

    @property
    def spills(self) -> bool:
        return self.stack > 0 or self.local > 0


def find_cuobjdump() -> str | None:
    """The toolkit's cuobjdump when there is one, else the copy Triton ships."""
    candidates = [shutil.which("cuobjdump")]
    for home in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"):
        if home:
            candidates.append(os.path.join(home, "bin", "cuobjdump"))
    try:
        from triton import knobs

        candidates.append(knobs.nvidia.cuobjdump.path)
    except (ImportError, AttributeError, RuntimeError):
        pass
    return next((c for c in candidates if c and os.access(c, os.X_OK)), None)


def demangle(names: list[str]) -> list[str]:
    cxxfilt = shutil.which("c++filt")
    if cxxfilt is None or not names:
        return names
    out = subprocess.run([cxxfilt], input="\n".join(names), capture_output=True, text=True)
    lines = out.stdout.splitlines()
    return lines if out.returncode == 0 and len(lines) == len(names) else names


def parse_resource_usage(text: str) -> list[KernelResources]:
    """Parse ``cuobjdump --dump-resource-usage`` of a cubin or of a library's fatbinary."""
    found = []
    arch = None
    name = None
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("arch = "):
            arch = line.split("=", 1)[1].strip()
        elif line.startswith("Function ") and line.endswith(":"):
            name = line[len("Function ") : -1]
        elif name is not None and (match := _USAGE.search(line)):
            regs, stack, shared, local = map(int, match.groups())
            found.append(KernelResources(name, arch, regs, stack, shared, local))
            name = None
    return found


def resource_usage(path: str) -> list[KernelResources]:
    cuobjdump = find_cuobjdump()
    if cuobjdump is None:
        pytest.skip("no cuobjdump (CUDA toolkit or Triton's copy) to read device code with")
    out = subprocess.run(
        [cuobjdump, "--dump-resource-usage", path], capture_output=True, text=True, check=True
    )
    return parse_resource_usage(out.stdout)


def format_table(rows: list[tuple], header: tuple) -> str:
    cells = [tuple(str(v) for v in header)] + [tuple(str(v) for v in row) for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    return "\n".join(
        "  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in cells
    )
