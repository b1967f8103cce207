"""Resources of the CUDA kernels in the built extension, read from its sm_90 device code.

``cuobjdump --dump-resource-usage`` lists registers, stack, local and static shared memory per
kernel. A register spill lands in local memory through the stack frame, so any ``STACK`` or
``LOCAL`` bytes fail the test; static shared memory must stay within the 48 KB a launch gets
without opting in. Needs no GPU; skipped when the extension was built without CUDA.
``tests/test_triton_aot.py`` reads the Triton kernels' cubins with the same parser.
"""

from __future__ import annotations

import os

import pytest

from fasa_fast._extension import extension_error, extension_path
from tests.kernel_resources import (
    ARCH,
    SHARED_LIMIT,
    demangle,
    format_table,
    parse_resource_usage,
    resource_usage,
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
