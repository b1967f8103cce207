"""Resources of the CUDA kernels in the built extension, read from its sm_90 device code.

``cuobjdump --dump-resource-usage`` lists registers, stack, local and static shared memory per
kernel. A register spill lands in local memory through the stack frame, so any ``STACK`` or
``LOCAL`` bytes fail the test; static shared memory must stay within the 48 KB a launch gets
without opting in. Needs no GPU; skipped when the extension was built without CUDA.
``tests/test_triton_aot.py`` reads the Triton kernels' cubins with the same parser.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass

import pytest

from fasa_fast._extension import extension_error, extension_path

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


SAMPLE_DUMP = """
Fatbin elf code:
================
arch = sm_90
code version = [1,8]

Resource usage:
 Common:
  GLOBAL:0
 Function _Z6kernelPf:
  REG:40 STACK:0 SHARED:5120 LOCAL:0 CONSTANT[0]:904 TEXTURE:0 SURFACE:0 SAMPLER:0
 Function _Z7spillerPf:
  REG:255 STACK:16 SHARED:0 LOCAL:16 CONSTANT[0]:904 TEXTURE:0 SURFACE:0 SAMPLER:0

Fatbin elf code:
================
arch = sm_80
code version = [1,7]

Resource usage:
 Function _Z6kernelPf:
  REG:38 STACK:0 SHARED:4096 LOCAL:0 CONSTANT[0]:904 TEXTURE:0 SURFACE:0 SAMPLER:0
"""


def test_parser_reads_every_kernel_of_every_arch():
    rows = parse_resource_usage(SAMPLE_DUMP)
    assert [(r.name, r.arch, r.registers, r.shared, r.spills) for r in rows] == [
        ("_Z6kernelPf", "sm_90", 40, 5120, False),
        ("_Z7spillerPf", "sm_90", 255, 0, True),
        ("_Z6kernelPf", "sm_80", 38, 4096, False),
    ]


def test_cuda_kernels_fit_without_spills_or_shared_opt_in():
    library = extension_path()
    if library is None:
        pytest.skip(f"the extension is not loaded: {extension_error()}")
    kernels = [r for r in resource_usage(library) if r.arch == ARCH]
    if not kernels:
        pytest.skip(f"the extension was built without CUDA: no {ARCH} device code in {library}")
    names = demangle([r.name for r in kernels])
    print(f"\nCUDA kernels of {os.path.basename(library)} ({ARCH}, cuobjdump):")
    print(
        format_table(
            [
                (n, r.registers, r.stack, r.local, r.shared)
                for n, r in zip(names, kernels, strict=True)
            ],
            ("kernel", "regs", "stack", "local", "shared"),
        )
    )
    spilling = [n for n, r in zip(names, kernels, strict=True) if r.spills]
    assert not spilling, f"kernels with a stack frame / local memory (register spills): {spilling}"
    too_big = [
        (n, r.shared) for n, r in zip(names, kernels, strict=True) if r.shared > SHARED_LIMIT
    ]
    assert not too_big, f"static shared memory above {SHARED_LIMIT} bytes: {too_big}"
