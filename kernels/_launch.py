"""What a launcher launches, as data, and the one place that launches it.

Each kernel module plans its launches (kernel, grid, arguments, meta-parameters) in a function of
the op's tensors and runs them with ``run``. The plan is also what
``tests/test_triton_aot.py`` compiles ahead of time for sm_90, so the specialisations checked
there are the ones the launchers produce, not a second list of them.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
from collections.abc import Callable, Iterable
from types import SimpleNamespace
from typing import Any, NamedTuple

import torch
import triton


def lanes(n: int, most: int) -> int:
    """The block width for ``n`` elements: the next power of two, capped at ``most`` and never
    under 2. Triton 3.2's interpreter ignores the mask of a 1-wide block: a masked store of a
    one-lane block writes anyway (a 1-dimensional row of a 1-wide ``BLOCK_Q`` wrote three floats
    past the output and corrupted the heap under ``make oldest``), and a scan over one lane
    fails there. The spare lane is masked off and costs nothing on a GPU."""
    return max(2, min(most, triton.next_power_of_2(n)))


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


def runs_plan(plan: Callable[..., list[Launch]], name: str) -> Callable[..., None]:
    """The op's Triton implementation where it only runs its plan: ``name(*args)`` runs the
    launches of ``plan(*args)`` with the device of the first argument (a tensor) current, so the
    op's arguments are written once, in ``plan``'s signature."""
    first_parameter = next(iter(inspect.signature(plan).parameters))

    def entry(*args, **kwargs) -> None:
        first = args[0] if args else kwargs[first_parameter]
        run(plan(*args, **kwargs), first.device)

    entry.__name__ = entry.__qualname__ = name
    entry.__doc__ = f"Run the launches of ``{plan.__name__}``: arguments as it takes them."
    entry.__signature__ = inspect.signature(plan).replace(return_annotation=None)
    return entry


def takes_arguments_of(spec: Callable) -> Callable[[Callable], Callable]:
    """Give a launcher the op's parameters as ``spec`` (its reference implementation) declares
    them, so that no backend writes the op's parameter list again.

    The decorated function receives the op's arguments bound by name, defaults applied, as one
    namespace ``op`` (``op.mean``, ``op.k``, ...), then its own keyword-only parameters (a plan's
    output buffers). It is called, and reports its signature, as ``spec`` plus those."""
    spec_signature = inspect.signature(spec)  # follows functools.wraps to the reference
    variadic = [
        p.name
        for p in spec_signature.parameters.values()
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]
    if variadic:
        raise TypeError(
            f"takes_arguments_of: spec {getattr(spec, '__qualname__', spec)!r} must declare the op's "
            f"parameters by name, got the variadic {variadic}"
        )

    def decorate(function: Callable) -> Callable:
        own = list(inspect.signature(function).parameters.values())[1:]  # after `op`
        if any(parameter.kind is not parameter.KEYWORD_ONLY for parameter in own):
            raise TypeError(f"{function.__name__}: expected (op, *, own keyword-only parameters)")

        names = tuple(spec_signature.parameters)

        @functools.wraps(function)
        def launcher(*args, **kwargs):
            mine = {p.name: kwargs.pop(p.name) for p in own if p.name in kwargs}
            if not kwargs and len(args) == len(names):
                # the dispatcher's call, every argument positional: skip Signature.bind (~6 us
                # a call, on the training step's host path)
                return function(SimpleNamespace(**dict(zip(names, args, strict=True))), **mine)
            arguments = spec_signature.bind(*args, **kwargs)
            arguments.apply_defaults()
            return function(SimpleNamespace(**arguments.arguments), **mine)

        launcher.__signature__ = spec_signature.replace(
            parameters=[*spec_signature.parameters.values(), *own],
            return_annotation=inspect.signature(function).return_annotation,
        )
        return launcher

    return decorate
