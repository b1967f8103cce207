"""The op registry: every fasa_fast op is declared here once, by its own module.

An op module (``fasa_fast/ops/<op>.py``) calls ``declare_op`` once with everything the
dispatcher needs to know about the op: its schema, its fake (meta) kernel, its autograd rule
and where its reference and Triton implementations live. ``fasa_fast.ops._library`` then loops
over ``OPS`` to define the schemas, register the fakes and autograd rules and route each device
type to a backend; it names no op itself. The compiled extension registers kernels only
(``TORCH_LIBRARY_IMPL`` in ``csrc/``), for the schemas defined from here.

Implementations are named as ``"module:function"`` strings and imported when a backend is
selected: the Triton kernels import triton, which is optional, and a name looked up at
registration time is what the dispatch tests intercept to see which kernel really runs.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

NAMESPACE = "fasa_fast"


@dataclass(frozen=True)
class OpDef:
    """One op of the ``fasa_fast`` namespace.

    Attributes:
        name: the op's name, ``torch.ops.fasa_fast.<name>``.
        schema: its signature without the name, e.g. ``"(Tensor x, float eps) -> Tensor"``.
        fake: the fake kernel (output shapes only) for FakeTensor tracing and torch.compile.
        reference: ``"module:function"`` of the pure-PyTorch implementation (every device).
        triton: ``"module:function"`` of the Triton launcher.
        backward: the autograd rule given to ``torch.library.register_autograd``, or None for
            an op whose public wrapper detaches its inputs (mutating ops cannot have one).
    """

    name: str
    schema: str
    fake: Callable
    reference: str
    triton: str
    backward: Callable | None = None

    @property
    def qualname(self) -> str:
        return f"{NAMESPACE}::{self.name}"


OPS: dict[str, OpDef] = {}


def declare_op(
    name: str,
    schema: str,
    *,
    fake: Callable,
    reference: str,
    triton: str,
    backward: Callable | None = None,
) -> OpDef:
    """Add an op to the registry (once per name; the op module calls this at import)."""
    if name in OPS:
        raise RuntimeError(f"name: op {NAMESPACE}::{name} is already declared")
    for field, target in (("reference", reference), ("triton", triton)):
        if target.count(":") != 1:
            raise ValueError(f"{field}: expected 'module:function', got {target!r}")
    op = OpDef(name, schema, fake, reference, triton, backward)
    OPS[name] = op
    return op


def resolve(target: str) -> Callable:
    """The function a ``"module:function"`` string names, looked up now."""
    module, function = target.split(":")
    return getattr(importlib.import_module(module), function)


def not_differentiable(name: str) -> Callable:
    """An autograd rule that refuses the backward pass with a message naming the op."""

    def backward(ctx, *grads):
        raise RuntimeError(
            f"{NAMESPACE}::{name} is not differentiable: FASA's class statistics are running "
            "buffers and carry no gradient. Detach them (they are buffers of fasa_fast.FASA)."
        )

    return backward
