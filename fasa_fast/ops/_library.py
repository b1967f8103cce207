"""Registration of the ``fasa_fast`` ops with the dispatcher, and the backend policy.

One schema per op (``_schema.py``, declared in C++ by ``csrc/fasa_ops.cpp`` when the extension
is built). Backends are interchangeable implementations of that schema per device type:

- ``native``: the compiled C++ (CPU) / CUDA kernels, registered by the extension itself;
- ``triton``: the Triton kernels in ``fasa_fast.kernels`` (CUDA; CPU only under the interpreter);
- ``reference``: the pure-PyTorch specification in ``fasa_fast.ops.reference``.

Default policy: on CPU ``native`` when the extension is loaded, else ``reference``; on CUDA
``native`` when the extension has CUDA kernels, else ``triton`` when Triton imports, else
``reference``. Override per device type with ``set_backend`` / ``use_backend`` or, at import,
the environment variables ``FASA_FAST_CPU_BACKEND`` and ``FASA_FAST_CUDA_BACKEND``.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Callable, Iterator

import torch

from fasa_fast._extension import extension_loaded
from fasa_fast.ops import reference
from fasa_fast.ops._schema import NAMESPACE, SCHEMAS

BACKENDS = ("native", "triton", "reference")
DEVICE_TYPES = ("cpu", "cuda")
_DISPATCH_KEY = {"cpu": "CPU", "cuda": "CUDA"}


def _qualname(name: str) -> str:
    return f"{NAMESPACE}::{name}"


def _op_defined(name: str) -> bool:
    return torch._C._dispatch_has_kernel(_qualname(name)) or hasattr(
        getattr(torch.ops, NAMESPACE), name
    )


# Without the extension the schemas are defined here, from the same strings.
_definitions: torch.library.Library | None = None
if not all(_op_defined(name) for name in SCHEMAS):
    _definitions = torch.library.Library(NAMESPACE, "FRAGMENT")  # noqa: TOR901
    for _name, _schema in SCHEMAS.items():
        if not _op_defined(_name):
            _definitions.define(_name + _schema)


def native_available(device_type: str) -> bool:
    """True when the compiled extension registered kernels for ``device_type``."""
    key = _DISPATCH_KEY[device_type]
    return extension_loaded() and all(
        torch._C._dispatch_has_kernel_for_dispatch_key(_qualname(name), key)
        and not _python_registered.get(device_type)
        for name in SCHEMAS
    )


def triton_available() -> bool:
    """Whether the Triton backend can run: triton imports *and* so do our kernels.

    ``fasa_fast.kernels`` is the repo's ``kernels/`` mapped by ``package_dir``; a build that
    skips that mapping (``setup.py build_ext --inplace``) has triton but not the kernels, and
    must fall back instead of failing every import of ``fasa_fast``.
    """
    try:
        import triton  # noqa: F401

        import fasa_fast.kernels  # noqa: F401
    except ImportError:
        return False
    return True


def _triton_impls() -> dict[str, Callable]:
    from fasa_fast.kernels.fisher_distance import fisher_distance_triton
    from fasa_fast.kernels.sample_virtual_features import sample_virtual_features_triton
    from fasa_fast.kernels.segmented_stats_update import segmented_stats_update_triton

    return {
        "segmented_stats_update_": segmented_stats_update_triton,
        "fisher_distance": fisher_distance_triton,
        "sample_virtual_features": sample_virtual_features_triton,
    }


def _reference_impls() -> dict[str, Callable]:
    return {
        "segmented_stats_update_": reference.segmented_stats_update_reference,
        "fisher_distance": reference.fisher_distance_reference,
        "sample_virtual_features": reference.sample_virtual_features_reference,
    }


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
    old = _python_registered.pop(device_type, None)
    if old is not None:
        old._destroy()
    if backend == "native":
        if not native_available(device_type):
            raise RuntimeError(
                f"backend 'native' is not available on {device_type}: the compiled extension "
                "is not loaded or was built without kernels for it"
            )
        _active[device_type] = backend
        return
    if backend == "triton" and not triton_available():
        raise RuntimeError("backend 'triton' needs the triton package")
    impls = _triton_impls() if backend == "triton" else _reference_impls()
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


# Fake (meta) kernels: shapes only, for torch.compile and FakeTensor tracing.
@torch.library.register_fake(_qualname("segmented_stats_update_"))
def _segmented_stats_update_fake(features, labels, mean, std, seen, momentum, momentum_on_var):
    return None


@torch.library.register_fake(_qualname("fisher_distance"))
def _fisher_distance_fake(mean, std, eps):
    return mean.new_empty(mean.shape[0], mean.shape[0])


@torch.library.register_fake(_qualname("sample_virtual_features"))
def _sample_virtual_features_fake(mean, std, seen, prob, rng_state, k, capacity):
    return (
        mean.new_empty(capacity, mean.shape[1]),
        mean.new_empty(capacity, dtype=torch.long),
        mean.new_empty(2, dtype=torch.long),
    )


def _not_differentiable(name: str) -> Callable:
    def backward(ctx, *grads):
        raise RuntimeError(
            f"{_qualname(name)} is not differentiable: FASA's class statistics are running "
            "buffers and carry no gradient. Detach them (they are buffers of fasa_fast.FASA)."
        )

    return backward


torch.library.register_autograd(
    _qualname("fisher_distance"), _not_differentiable("fisher_distance")
)

for _device_type in DEVICE_TYPES:
    set_backend(_device_type, default_backend(_device_type))
