"""Which kernel actually runs on the CPU after ``set_backend`` / ``use_backend``.

``get_backend`` only reports a label. These tests watch the implementations themselves: the
reference and Triton functions are wrapped with call counters before a backend is chosen (the
dispatch layer looks them up by name when it registers them), and every result is checked
against the float64 oracles, so a backend that silently serves another one's kernels, or a
stale registration left behind by a switch, fails here.
"""

from __future__ import annotations

import collections
import functools
import importlib
import importlib.util

import pytest
import torch

import fasa_fast
from fasa_fast.ops import (
    _library,
    fisher_distance,
    make_rng_state,
    reference,
    sample_virtual_features,
    segmented_stats_update_,
)
from tests.oracle import fisher_oracle, sample_oracle, stats_update_oracle

# op name -> (function in fasa_fast.ops.reference, Triton module, function in that module)
IMPLEMENTATIONS = {
    "segmented_stats_update_": (
        "segmented_stats_update_reference",
        "fasa_fast.kernels.segmented_stats_update",
        "segmented_stats_update_triton",
    ),
    "fisher_distance": (
        "fisher_distance_reference",
        "fasa_fast.kernels.fisher_distance",
        "fisher_distance_triton",
    ),
    "sample_virtual_features": (
        "sample_virtual_features_reference",
        "fasa_fast.kernels.sample_virtual_features",
        "sample_virtual_features_triton",
    ),
}


def installed_triton() -> tuple[int, ...]:
    import triton

    return _library._version_tuple(triton.__version__)


def cpu_backends() -> list:
    """The CPU backends to test. Unlike ``tests.backends``, availability is not asked of the
    policy under test (``native_available`` says False while a Python kernel overrides the
    extension's), so a policy that never serves ``native`` fails here instead of skipping."""
    params = []
    for backend in _library.BACKENDS:
        marks = []
        if backend == "native" and not fasa_fast.extension_loaded():
            marks.append(pytest.mark.skip(reason="the compiled extension is not loaded"))
        if backend == "triton" and importlib.util.find_spec("triton") is None:
            marks.append(pytest.mark.skip(reason="triton not installed"))
        elif backend == "triton" and installed_triton() < _library.MIN_TRITON:
            marks.append(pytest.mark.skip(reason="triton older than ops._library.MIN_TRITON"))
        params.append(pytest.param(backend, marks=marks, id=f"cpu-{backend}"))
    return params


CPU_BACKENDS = cpu_backends()
AVAILABLE = [p.values[0] for p in CPU_BACKENDS if not p.marks]


@pytest.fixture
def calls(monkeypatch):
    """Counts calls of every Python implementation (``(backend, op)`` -> calls) while the test
    runs; afterwards the original functions and the CPU backend in force before are restored."""
    counter: collections.Counter = collections.Counter()

    def wrap(module, attr, key):
        original = getattr(module, attr)

        # wraps: the Triton launchers read their parameters from the reference's signature
        # (kernels/_launch.py), and their module may first be imported while it is wrapped
        @functools.wraps(original)
        def counting(*args, **kwargs):
            counter[key] += 1
            return original(*args, **kwargs)

        monkeypatch.setattr(module, attr, counting)

    for name, (reference_fn, triton_module, triton_fn) in IMPLEMENTATIONS.items():
        wrap(reference, reference_fn, ("reference", name))
        if _library.triton_available():
            wrap(importlib.import_module(triton_module), triton_fn, ("triton", name))
    previous = _library.get_backend("cpu")
    yield counter
    monkeypatch.undo()
    _library.set_backend("cpu", previous)  # registers the unwrapped functions again


def run_every_op_against_oracles():
    """One call of each op through its public entry point, each result checked."""
    gen = torch.Generator().manual_seed(0)
    features = torch.randn(24, 5, generator=gen)
    labels = torch.tensor([0, 1, 2] * 7 + [3, -1, 3])  # 3 is background for C = 3
    mean, std = torch.zeros(3, 5), torch.zeros(3, 5)
    seen = torch.zeros(3, dtype=torch.long)
    want_mean, want_std, want_seen = stats_update_oracle(
        features, labels, mean, std, seen, 0.1, False
    )
    segmented_stats_update_(features, labels, mean, std, seen)
    assert seen.tolist() == want_seen.tolist()
    torch.testing.assert_close(mean.double(), want_mean, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(std.double(), want_std, atol=1e-5, rtol=1e-5)

    distance = fisher_distance(mean, std)
    torch.testing.assert_close(
        distance.double(), fisher_oracle(mean, std, 1e-6), atol=1e-5, rtol=1e-4
    )

    prob = torch.tensor([1.0, 0.0, 1.0])
    rng = make_rng_state(7)
    feats, vlabels, counts = sample_virtual_features(mean, std, seen, prob, rng, 2, 6)
    want_feats, want_labels, want_counts = sample_oracle(mean, std, seen, prob, 7, 0, 2, 6)
    assert vlabels.tolist() == want_labels.tolist() and counts.tolist() == list(want_counts)
    torch.testing.assert_close(feats.double(), want_feats, atol=1e-5, rtol=1e-5)


def expected_calls(backend):
    """Each op once on the Python implementation of ``backend``; none for the C++ kernels."""
    if backend == "native":
        return collections.Counter()
    return collections.Counter({(backend, name): 1 for name in IMPLEMENTATIONS})


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_chosen_backend_is_the_kernel_that_runs(calls, backend):
    with _library.use_backend("cpu", backend):
        run_every_op_against_oracles()
    assert calls == expected_calls(backend), (
        f"implementations called under {backend!r}: expected {dict(expected_calls(backend))}, "
        f"got {dict(calls)}"
    )


def test_switching_backends_leaves_no_stale_kernel(calls):
    # Every order of switches the policy can see: each phase runs only its own kernels.
    sequence = AVAILABLE + AVAILABLE[::-1] + AVAILABLE
    for backend in sequence:
        calls.clear()
        _library.set_backend("cpu", backend)
        run_every_op_against_oracles()
        assert calls == expected_calls(backend), (
            f"after switching to {backend!r} (sequence {sequence}): expected "
            f"{dict(expected_calls(backend))}, got {dict(calls)}"
        )


def cpu_kernel_source(name):
    """Where the dispatcher's CPU kernel of ``fasa_fast::<name>`` was registered."""
    table = torch._C._dispatch_dump_table(f"fasa_fast::{name}")
    lines = [line for line in table.splitlines() if line.startswith("CPU:")]
    assert len(lines) == 1, table
    return lines[0]


@pytest.mark.parametrize("name", sorted(IMPLEMENTATIONS))
def test_dispatcher_cpu_kernel_follows_the_backend(name):
    # The C++ kernels have no Python function to count: the dispatcher's table shows them,
    # registered from the extension's sources, while the Python backends register from
    # _library.py (which of the two Python backends runs is what the counters above pin).
    for backend in AVAILABLE:
        with _library.use_backend("cpu", backend):
            source = cpu_kernel_source(name)
        if backend == "native":
            assert "csrc" in source and ".py:" not in source, (
                f"native: expected the extension's kernel, got {source!r}"
            )
        else:
            # a Python registration: torch >= 2.7 records _library.py, older ones /dev/null
            assert "csrc" not in source and ("_library.py" in source or "/dev/null" in source), (
                f"{backend}: expected a Python kernel, got {source!r}"
            )


def test_available_backends_lists_what_set_backend_accepts(monkeypatch):
    # Every listed backend can be selected and serves the ops; an unlisted one is refused.
    listed = _library.available_backends("cpu")
    assert listed[-1] == "reference" and listed == [b for b in _library.BACKENDS if b in listed]
    assert ("native" in listed) == fasa_fast.extension_loaded()
    for backend in listed:
        with _library.use_backend("cpu", backend):
            run_every_op_against_oracles()
    monkeypatch.setenv("TRITON_INTERPRET", "0")  # Triton without a GPU or its interpreter
    assert "triton" not in _library.available_backends("cpu")
    with pytest.raises(ValueError, match="device_type: expected one of"):
        _library.available_backends("tpu")


def test_every_registered_op_is_watched_here():
    # A new op declared in the registry must be added to IMPLEMENTATIONS and to
    # run_every_op_against_oracles, or this file would stop proving which kernel runs for it.
    from fasa_fast.ops._registry import OPS

    assert set(IMPLEMENTATIONS) == set(OPS)
    for name, (reference_fn, triton_module, triton_fn) in IMPLEMENTATIONS.items():
        assert OPS[name].reference == f"fasa_fast.ops.reference:{reference_fn}"
        assert OPS[name].triton == f"{triton_module}:{triton_fn}"


def test_an_old_triton_is_not_used(monkeypatch):
    # Triton 3.0 rejects the kernels (torch 2.4's; seen with `make oldest` on torch 2.4.1)
    triton = pytest.importorskip("triton")
    monkeypatch.setattr(triton, "__version__", "3.0.0")
    assert not _library.triton_available()
    assert "triton" not in _library.available_backends("cuda")
    with pytest.raises(RuntimeError, match=r"backend 'triton' needs triton >= 3\.2"):
        _library.set_backend("cpu", "triton")
    monkeypatch.setattr(triton, "__version__", "3.2.0+git1234")
    assert _library.triton_available()


def test_a_refused_switch_leaves_the_routing_as_it_was(calls, monkeypatch):
    triton = pytest.importorskip("triton")
    _library.set_backend("cpu", "reference")
    monkeypatch.setattr(triton, "__version__", "3.0.0")
    with pytest.raises(RuntimeError, match="backend 'triton' needs"):
        _library.set_backend("cpu", "triton")
    monkeypatch.setattr(_library, "extension_loaded", lambda: False)  # as if never built
    with pytest.raises(RuntimeError, match="backend 'native' is not available on cpu"):
        _library.set_backend("cpu", "native")
    assert _library.get_backend("cpu") == "reference"
    calls.clear()
    run_every_op_against_oracles()
    assert calls == expected_calls("reference"), dict(calls)
