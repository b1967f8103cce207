"""Registration of the ``fasa_fast`` ops with the dispatcher, and the backend policy.

Every op is declared once, by its own module, in ``fasa_fast.ops._registry.OPS`` (schema,
fake kernel, autograd rule, where its implementations live); ``install`` loops over that
registry and names no op itself. Backends are interchangeable implementations of a schema per
device type:

- ``native``: the compiled C++ (CPU) / CUDA kernels, registered by the extension itself
  (``TORCH_LIBRARY_IMPL`` only: the schemas are defined here, from the registry);
- ``triton``: the Triton kernels in ``fasa_fast.kernels`` (CUDA; CPU only under the interpreter);
- ``reference``: the pure-PyTorch specification in ``fasa_fast.ops.reference``.

Default policy: on CPU ``native`` when the extension is loaded, else ``reference``; on CUDA
``native`` when the extension has CUDA kernels, else ``triton`` when Triton imports, else
``reference``. Override per device type with ``set_backend`` / ``use_backend`` or, at import,
the environment variables ``FASA_FAST_CPU_BACKEND`` and ``FASA_FAST_CUDA_BACKEND``.

Registration uses ``torch.library.register_fake`` / ``register_autograd`` where torch has them
(2.4+). Older torch (2.1 to 2.3) gets the same behaviour from what it has: the fake kernel as a
``Meta`` kernel (FakeTensor falls back to it) and the autograd rule as an ``Autograd`` kernel
wrapping a ``torch.autograd.Function``. ``torch.compile`` of the ops is supported from 2.4 only.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator

import torch

from fasa_fast._extension import extension_loaded
from fasa_fast.ops._registry import NAMESPACE, OPS, resolve

BACKENDS = ("native", "triton", "reference")
DEVICE_TYPES = ("cpu", "cuda")
_DISPATCH_KEY = {"cpu": "CPU", "cuda": "CUDA"}


def available_backends(device_type: str) -> list[str]:
    """The backends that can serve ``device_type`` in this process, in ``BACKENDS`` order (the
    one list tests, benchmarks and the fallback policy agree on). Triton counts on CPU only
    under its interpreter; whether a device is present is the caller's question."""
    if device_type not in DEVICE_TYPES:
        raise ValueError(f"device_type: expected one of {DEVICE_TYPES}, got {device_type!r}")
    available = {
        "native": native_available(device_type),
        "triton": triton_available()
        and (device_type == "cuda" or os.environ.get("TRITON_INTERPRET") == "1"),
        "reference": True,
    }
    return [backend for backend in BACKENDS if available[backend]]


def _op_defined(name: str) -> bool:
    """Whether the op has a schema already (an extension built before the schemas moved here
    still defines them itself; defining them twice is an error)."""
    try:
        torch._C._dispatch_find_schema_or_throw(f"{NAMESPACE}::{name}", "")
    except RuntimeError:
        return False
    return True


def native_available(device_type: str) -> bool:
    """True when the compiled extension registered kernels for ``device_type``."""
    key = _DISPATCH_KEY[device_type]
    return extension_loaded() and all(
        torch._C._dispatch_has_kernel_for_dispatch_key(f"{NAMESPACE}::{name}", key)
        and not _python_registered.get(device_type)
        for name in OPS
    )


# The oldest Triton the kernels are tested with (torch 2.6's; `make oldest`). Triton 3.0
# (torch 2.4) rejects them: its tl.arange takes constexpr arguments only.
MIN_TRITON = (3, 2)


def triton_available() -> bool:
    """Whether the Triton backend can run: triton >= ``MIN_TRITON`` imports *and* so do our
    kernels.

    ``fasa_fast.kernels`` is the repo's ``kernels/`` mapped by ``package_dir``; a build that
    skips that mapping (``setup.py build_ext --inplace``) has triton but not the kernels, and
    must fall back instead of failing every import of ``fasa_fast``. An older triton falls back
    too, and ``set_backend(..., 'triton')`` says why.
    """
    try:
        import triton

        import fasa_fast.kernels  # noqa: F401
    except ImportError:
        return False
    return _version_tuple(triton.__version__) >= MIN_TRITON


def _version_tuple(version: str) -> tuple[int, ...]:
    parts = []
    for piece in version.split("+")[0].split(".")[:2]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts)


# Python-registered overrides per device type; dropping the library restores what the
# extension registered.
_python_registered: dict[str, torch.library.Library] = {}
_active: dict[str, str] = {}


def set_backend(device_type: str, backend: str) -> None:
    """Route every fasa_fast op on ``device_type`` ('cpu' or 'cuda') to ``backend``."""
    if device_type not in DEVICE_TYPES:
        raise ValueError(f"device_type: expected one of {DEVICE_TYPES}, got {device_type!r}")
    if backend not in BACKENDS:
        raise ValueError(f"backend: expected one of {BACKENDS}, got {backend!r}")
    # A refused switch must leave the routing as it was: check before unregistering anything.
    if backend == "triton" and not triton_available():
        raise RuntimeError(
            "backend 'triton' needs triton >= "
            + ".".join(map(str, MIN_TRITON))
            + " and the fasa_fast.kernels package (pip install -e .)"
        )
    previous = _active.get(device_type)
    old = _python_registered.pop(device_type, None)
    if old is not None:
        _destroy(old)
    if backend == "native":
        if not native_available(device_type):
            if previous is not None and previous != "native":
                set_backend(device_type, previous)  # put the Python kernels back
            raise RuntimeError(
                f"backend 'native' is not available on {device_type}: the compiled extension "
                "is not loaded or was built without kernels for it"
            )
        _active[device_type] = backend
        return
    # Looked up now, by name: a backend switch always registers the current functions.
    impls = {name: resolve(getattr(op, backend)) for name, op in OPS.items()}
    lib = torch.library.Library(NAMESPACE, "IMPL")  # noqa: TOR901
    with warnings.catch_warnings():
        # Overriding the extension's kernel is the point here; the dispatcher warns about it.
        warnings.simplefilter("ignore")
        for name, fn in impls.items():
            lib.impl(name, fn, _DISPATCH_KEY[device_type])
    _python_registered[device_type] = lib
    _active[device_type] = backend


def get_backend(device_type: str) -> str:
    """The backend that currently serves ``device_type``."""
    return _active[device_type]


@contextlib.contextmanager
def use_backend(device_type: str, backend: str) -> Iterator[None]:
    """Temporarily route ``device_type`` to ``backend`` (tests, benchmarks)."""
    previous = get_backend(device_type)
    set_backend(device_type, backend)
    try:
        yield
    finally:
        set_backend(device_type, previous)


def default_backend(device_type: str) -> str:
    env = os.environ.get(f"FASA_FAST_{device_type.upper()}_BACKEND")
    if env:
        return env
    if native_available(device_type):
        return "native"
    if device_type == "cuda" and triton_available():
        return "triton"
    return "reference"


# The schemas the extension does not define (it registers kernels only), from the registry.
_definitions: torch.library.Library | None = None


def install() -> None:
    """Define every registered op, register its fake kernel and autograd rule, and route each
    device type to its default backend. Called once by ``fasa_fast.ops`` after the op modules
    have declared themselves; a second call does nothing."""
    global _definitions
    if _active:
        return
    _definitions = torch.library.Library(NAMESPACE, "FRAGMENT")  # noqa: TOR901
    for op in OPS.values():
        if not _op_defined(op.name):
            _definitions.define(op.name + op.schema)
        _register_fake(_definitions, op)
        if op.backward is not None:
            _register_autograd(_definitions, op)
    for device_type in DEVICE_TYPES:
        set_backend(device_type, default_backend(device_type))


# torch < 2.4 has neither register_fake nor register_autograd, and torch < 2.2 no
# Library._destroy: the equivalents below are what those releases offer.
HAS_REGISTER_FAKE = hasattr(torch.library, "register_fake")
HAS_REGISTER_AUTOGRAD = hasattr(torch.library, "register_autograd")


def _register_fake(lib: torch.library.Library, op) -> None:
    if HAS_REGISTER_FAKE:
        torch.library.register_fake(op.qualname, op.fake, lib=lib)
    else:
        # FakeTensorMode runs an op without a fake kernel through its Meta kernel.
        lib.impl(op.name, op.fake, "Meta")


def _register_autograd(lib: torch.library.Library, op) -> None:
    if HAS_REGISTER_AUTOGRAD:
        torch.library.register_autograd(op.qualname, op.backward, lib=lib)
        return

    class _Rule(torch.autograd.Function):
        @staticmethod
        def forward(ctx, *args):
            with torch._C._AutoDispatchBelowAutograd():
                return getattr(torch.ops.fasa_fast, op.name).default(*args)

        @staticmethod
        def backward(ctx, *grads):
            return op.backward(ctx, *grads)

    def autograd_kernel(*args):
        return _Rule.apply(*args)

    lib.impl(op.name, autograd_kernel, "Autograd")


def _destroy(lib: torch.library.Library) -> None:
    """Unregister everything ``lib`` registered."""
    if hasattr(lib, "_destroy"):
        lib._destroy()
        return
    # torch < 2.2: dropping the handle unregisters the kernels; the module-level set of
    # Python-overridden (namespace, op, key) triples must forget them too, or a later
    # registration for the same key is refused.
    torch.library._impls.difference_update(lib._op_impls)
    lib._op_impls.clear()
    lib.m = None
