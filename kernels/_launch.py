"""What a launcher launches, as data, and the one place that launches it.

Each kernel module plans its launches (kernel, grid, arguments, meta-parameters) in a function of
the op's tensors and runs them with ``run``. The plan is also what
``tests/test_triton_aot.py`` compiles ahead of time for sm_90, so the specialisations checked
there are the ones the launchers produce, not a second list of them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from typing import Any, NamedTuple

import torch


class Launch(NamedTuple):
    kernel: Any  # a triton JITFunction (an InterpretedFunction under TRITON_INTERPRET=1)
    grid: tuple[int, ...]
    args: tuple
    meta: dict[str, Any]  # constexpr arguments and launch options (num_warps)


def device_guard(device: torch.device) -> contextlib.AbstractContextManager:
    """Triton launches on the *current* CUDA device and its stream: make that the tensors'
    device, or tensors on ``cuda:1`` while ``cuda:0`` is current would be read from the wrong
    device. Other devices (the CPU interpreter) need no guard."""
    if device.type == "cuda":
        return torch.cuda.device(device)
    return contextlib.nullcontext()


def run(launches: Iterable[Launch], device: torch.device) -> None:
    """Launch each planned kernel, in order, with ``device`` current."""
    with device_guard(device):
        for launch in launches:
            launch.kernel[launch.grid](*launch.args, **launch.meta)
