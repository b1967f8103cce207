"""The op registry and its installation, exercised at test time.

``fasa_fast.ops`` runs ``declare_op`` and ``_library.install()`` once, at import: every op test
uses what they built, but a mutation tool that imports the package before it switches a mutant
on never sees them run. Here they run again on a probe op of this file (its own name in the
``fasa_fast`` namespace, its own routing tables), and the op they build is checked by calling
it: the schema, the fake kernel, the autograd rule, the kernel each device type is routed to.
"""

from __future__ import annotations

import uuid

import pytest
import torch

from fasa_fast.ops import _library, _registry
from fasa_fast.ops._registry import OpDef, declare_op, not_differentiable, resolve
from tests.backends import need

CALLS: list[str] = []


def probe_reference(x: torch.Tensor, scale: float) -> torch.Tensor:
    CALLS.append("reference")
    return x * scale


def probe_triton(x: torch.Tensor, scale: float) -> torch.Tensor:
    CALLS.append("triton")
    return x * scale


def probe_fake(x: torch.Tensor, scale: float) -> torch.Tensor:
    return torch.empty_like(x)


def probe_backward(ctx, grad):
    return grad * 2.0, None


@pytest.fixture
def probe(monkeypatch):
    """A fresh registry holding one probe op, and fresh routing tables: ``install()`` builds the
    probe as it built the real ops at import, leaving theirs alone."""
    name = f"probe_{uuid.uuid4().hex[:8]}"
    registry: dict[str, OpDef] = {}
    for module in (_registry, _library):
        monkeypatch.setattr(module, "OPS", registry)
    monkeypatch.setattr(_library, "_active", {})
    monkeypatch.setattr(_library, "_python_registered", {})
    monkeypatch.setattr(_library, "_definitions", None)
    for device_type in _library.DEVICE_TYPES:
        monkeypatch.delenv(f"FASA_FAST_{device_type.upper()}_BACKEND", raising=False)
    CALLS.clear()
    yield name, registry
    for lib in _library._python_registered.values():
        _library._destroy(lib)
    if _library._definitions is not None:
        _library._destroy(_library._definitions)


def declare_probe(name, backward=probe_backward):
    return declare_op(
        name,
        "(Tensor x, float scale) -> Tensor",
        fake=probe_fake,
        reference=f"{__name__}:probe_reference",
        triton=f"{__name__}:probe_triton",
        backward=backward,
    )


def test_declare_op_records_everything_once(probe):
    name, registry = probe
    op = declare_probe(name)
    assert registry == {name: op}
    assert (op.name, op.schema, op.fake, op.backward) == (
        name,
        "(Tensor x, float scale) -> Tensor",
        probe_fake,
        probe_backward,
    )
    assert (op.reference, op.triton) == (f"{__name__}:probe_reference", f"{__name__}:probe_triton")
    assert op.qualname == f"fasa_fast::{name}"
    assert (
        declare_op(
            name + "_2", "(Tensor x) -> Tensor", fake=probe_fake, reference="m:f", triton="m:g"
        ).backward
        is None
    )
    with pytest.raises(RuntimeError, match=f"name: op fasa_fast::{name} is already declared"):
        declare_probe(name)
    assert registry[name] is op, "a refused declaration must not replace the first"


# ids without the word the mutation run's -k drops (scripts/mutation.sh)
@pytest.mark.parametrize(
    "field, target",
    [("reference", "no_colon"), ("triton", "a:b:c"), ("reference", "")],
    ids=["no-colon", "two-colons", "empty"],
)
def test_declare_op_wants_module_colon_function(probe, field, target):
    name, registry = probe
    kwargs = dict(reference="m:f", triton="m:g")
    kwargs[field] = target
    with pytest.raises(ValueError, match=f"{field}: expected 'module:function', got {target!r}"):
        declare_op(name, "(Tensor x) -> Tensor", fake=probe_fake, **kwargs)
    assert registry == {}


def test_resolve_looks_the_function_up_by_name():
    assert resolve(f"{__name__}:probe_reference") is probe_reference
    assert resolve("math:sqrt")(9.0) == 3.0


def test_not_differentiable_names_the_op():
    backward = not_differentiable("some_op")
    with pytest.raises(RuntimeError, match="fasa_fast::some_op is not differentiable"):
        backward(None, torch.ones(1))


def test_install_defines_the_probe_with_fake_autograd_and_reference_kernel(probe, monkeypatch):
    name, _ = probe
    monkeypatch.setattr(_library, "triton_available", lambda: False)
    declare_probe(name)
    assert not _library._op_defined(name)
    _library.install()
    assert _library._op_defined(name)
    op = getattr(torch.ops.fasa_fast, name)
    assert str(op.default._schema) == f"fasa_fast::{name}(Tensor x, float scale) -> Tensor"
    assert _library._active == {"cpu": "reference", "cuda": "reference"}
    x = torch.arange(3.0)
    torch.testing.assert_close(op(x, 2.0), x * 2.0)
    assert CALLS == ["reference"], f"kernels run: {CALLS}"
    # the fake kernel: shapes without data
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode() as mode:
        out = op(mode.from_tensor(torch.ones(4, 2)), 3.0)
    assert out.shape == (4, 2) and CALLS == ["reference"], "the fake kernel ran no real kernel"
    # a second install() changes nothing
    definitions = _library._definitions
    _library.install()
    assert _library._definitions is definitions


def test_install_registers_the_autograd_rule(probe, monkeypatch):
    name, _ = probe
    monkeypatch.setattr(_library, "triton_available", lambda: False)

    def backward(ctx, grad):
        return grad * 5.0, None  # not the op's derivative (2): shows whose rule runs

    declare_probe(name, backward=backward)
    _library.install()
    x = torch.ones(3, requires_grad=True)
    getattr(torch.ops.fasa_fast, name)(x, 2.0).sum().backward()
    torch.testing.assert_close(x.grad, torch.full((3,), 5.0))
    assert torch._C._dispatch_has_kernel_for_dispatch_key(f"fasa_fast::{name}", "Autograd")


def test_install_without_an_autograd_rule_leaves_the_op_without_one(probe, monkeypatch):
    name, _ = probe
    monkeypatch.setattr(_library, "triton_available", lambda: False)
    declare_probe(name, backward=None)
    _library.install()
    has_rule = torch._C._dispatch_has_kernel_for_dispatch_key(f"fasa_fast::{name}", "Autograd")
    assert not has_rule, "no backward declared: expected no autograd kernel"


def test_install_routes_cuda_by_the_default_policy(probe, monkeypatch):
    name, _ = probe
    monkeypatch.setattr(_library, "triton_available", lambda: True)
    declare_probe(name)
    _library.install()
    assert _library._active == {"cpu": "reference", "cuda": "triton"}


@pytest.mark.parametrize(
    "device_type, env, native, triton, expected",
    [
        ("cpu", None, True, True, "native"),
        ("cpu", None, False, True, "reference"),  # Triton serves CPU only when asked for
        ("cuda", None, True, True, "native"),
        ("cuda", None, False, True, "triton"),
        ("cuda", None, False, False, "reference"),
        ("cpu", "triton", True, True, "triton"),
        ("cuda", "reference", True, True, "reference"),
        ("cuda", "", False, True, "triton"),  # an empty variable is no choice
    ],
    ids=[f"case{i}" for i in range(8)],  # no backend names in ids: see above
)
def test_default_backend_policy(monkeypatch, device_type, env, native, triton, expected):
    variable = f"FASA_FAST_{device_type.upper()}_BACKEND"
    if env is None:
        monkeypatch.delenv(variable, raising=False)
    else:
        monkeypatch.setenv(variable, env)
    monkeypatch.setattr(_library, "native_available", lambda d: native and d == device_type)
    monkeypatch.setattr(_library, "triton_available", lambda: triton)
    assert _library.default_backend(device_type) == expected


def test_op_defined_tells_declared_ops_from_others():
    assert _library._op_defined("segmented_stats_update_")
    assert _library._op_defined("fisher_distance")
    assert not _library._op_defined("no_such_op")


def test_install_keeps_a_schema_defined_elsewhere(probe, monkeypatch):
    # an extension built before the schemas moved to the registry defines them itself: install()
    # must use that definition, not define the op a second time (an error)
    name, _ = probe
    monkeypatch.setattr(_library, "triton_available", lambda: False)
    declare_probe(name)
    elsewhere = torch.library.Library("fasa_fast", "FRAGMENT")  # noqa: TOR901
    try:
        elsewhere.define(name + "(Tensor x, float scale) -> Tensor")
        _library.install()
        x = torch.arange(3.0)
        torch.testing.assert_close(getattr(torch.ops.fasa_fast, name)(x, 3.0), x * 3.0)
    finally:
        for lib in _library._python_registered.values():
            _library._destroy(lib)
        _library._python_registered.clear()
        _library._destroy(_library._definitions)
        _library._definitions = None
        _library._destroy(elsewhere)


# ---- which backends can serve a device (test names avoid the word the mutation run's -k drops)
@pytest.mark.parametrize(
    "version, expected",
    [
        ("3.2.0", (3, 2)),
        ("3.10.1", (3, 10)),
        ("3.1+4.5", (3, 1)),  # a local version after '+' is not part of it
        ("3.6.0rc1", (3, 6)),
        ("3.x", (3, 0)),  # a piece without digits counts as 0
        ("4", (4,)),
    ],
)
def test_version_tuple(version, expected):
    assert _library._version_tuple(version) == expected


@pytest.mark.parametrize(
    "version, usable",
    [("3.2.0", True), ("3.1.9", False), ("3.6.0", True)],
    ids=["3.2", "3.1", "3.6"],
)
def test_oldest_usable_compiler_version(monkeypatch, version, usable):
    triton = need("triton")

    monkeypatch.setattr(triton, "__version__", version)
    assert _library.triton_available() is usable


def test_kernel_package_missing_means_unavailable(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_kernels(name, *args, **kwargs):
        if name == "fasa_fast.kernels":
            raise ImportError("no kernels package")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_kernels)
    assert _library.triton_available() is False


@pytest.mark.parametrize(
    "device_type, interpret, compiler, expected",
    [
        ("cuda", None, True, ["native", "triton", "reference"]),
        ("cuda", None, False, ["native", "reference"]),
        ("cpu", None, True, ["native", "reference"]),  # Triton on a CPU only interpreted
        ("cpu", "1", True, ["native", "triton", "reference"]),
        ("cpu", "0", True, ["native", "reference"]),
    ],
)
def test_available_backends_by_device(monkeypatch, device_type, interpret, compiler, expected):
    if interpret is None:
        monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    else:
        monkeypatch.setenv("TRITON_INTERPRET", interpret)
    monkeypatch.setattr(_library, "native_available", lambda d: True)
    monkeypatch.setattr(_library, "triton_available", lambda: compiler)
    assert _library.available_backends(device_type) == expected


def test_a_refused_native_switch_from_native_stays_native(monkeypatch):
    # native was serving, the extension is gone: nothing to put back, the refusal says why
    if "native" not in _library.available_backends("cpu"):
        pytest.skip("no compiled CPU kernels")
    with _library.use_backend("cpu", "native"):
        monkeypatch.setattr(_library, "extension_loaded", lambda: False)
        with pytest.raises(RuntimeError, match="backend 'native' is not available on cpu"):
            _library.set_backend("cpu", "native")
        assert _library.get_backend("cpu") == "native"
        monkeypatch.undo()


def test_python_kernels_are_not_counted_as_native():
    # with Python kernels registered over the extension's, the dispatcher has a kernel for the
    # device, but it is not the compiled one
    if "native" not in _library.available_backends("cpu"):
        pytest.skip("no compiled CPU kernels")
    with _library.use_backend("cpu", "reference"):
        assert not _library.native_available("cpu")
    with _library.use_backend("cpu", "native"):
        assert _library.native_available("cpu")
