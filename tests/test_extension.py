"""The foundation: the built extension, its registrations, the CUDA part, the fallback."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import fasa_fast
from fasa_fast.ops import _library
from fasa_fast.ops._schema import NAMESPACE, SCHEMAS

ROOT = Path(__file__).resolve().parents[1]


def cuda_should_be_built() -> bool:
    """What setup.py promises: a CUDA torch plus a CUDA toolkit, unless FORCE_CUDA=0."""
    if os.environ.get("FORCE_CUDA") == "0" or torch.version.cuda is None:
        return False
    return bool(os.environ.get("CUDA_HOME") or shutil.which("nvcc"))


def test_extension_loaded():
    assert fasa_fast.extension_loaded(), fasa_fast.extension_error()


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_cpu_kernels_registered_by_extension(name):
    assert torch._C._dispatch_has_kernel_for_dispatch_key(f"{NAMESPACE}::{name}", "CPU")
    assert _library.native_available("cpu")


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_python_schema_mirrors_the_cpp_schema(name):
    op = getattr(torch.ops.fasa_fast, name).default
    assert str(op._schema) == f"{NAMESPACE}::{name}{SCHEMAS[name]}"


def test_cuda_kernels_compiled_when_they_should_be():
    if not cuda_should_be_built():
        pytest.skip("no CUDA torch + toolkit here, or FORCE_CUDA=0: a CPU-only build is right")
    from fasa_fast._extension import extension_path

    library = extension_path()
    assert library is not None
    # The device code itself: the library must embed a fatbinary with Hopper (sm_90) code.
    cuobjdump = shutil.which("cuobjdump") or os.path.join(
        os.environ.get("CUDA_HOME", "/usr/local/cuda"), "bin", "cuobjdump"
    )
    if os.path.exists(cuobjdump):
        listing = subprocess.run(
            [cuobjdump, "--list-elf", library], capture_output=True, text=True, check=True
        ).stdout
        assert "sm_90" in listing, listing
    else:
        sections = subprocess.run(
            ["readelf", "-S", "-W", library], capture_output=True, text=True, check=True
        ).stdout
        assert ".nv_fatbin" in sections
    for name in SCHEMAS:
        assert torch._C._dispatch_has_kernel_for_dispatch_key(f"{NAMESPACE}::{name}", "CUDA")


def test_import_without_extension_falls_back_and_says_so_once():
    code = textwrap.dedent(
        """
        import sys, warnings
        sys.modules["fasa_fast._C"] = None  # as if the extension was never built
        warnings.simplefilter("always")
        with warnings.catch_warnings(record=True) as caught:
            import torch, fasa_fast
            from fasa_fast.ops import get_backend, make_rng_state, sample_virtual_features
            from tests.oracle import fisher_oracle, sample_oracle, stats_update_oracle
            state = [torch.zeros(3, 4), torch.zeros(3, 4), torch.zeros(3, dtype=torch.long)]
            want = [t.double() for t in state]
            for step in range(3):
                x = torch.randn(20, 4) * (step + 1); y = torch.randint(-1, 4, (20,))
                fasa_fast.segmented_stats_update_(x, y, *state)
                want = list(stats_update_oracle(x, y, *want, 0.1, False))
            d = fasa_fast.fisher_distance(state[0], state[1])
            prob = torch.tensor([1.0, 0.5, 1.0])
            feats, labels, counts = sample_virtual_features(*state, prob, make_rng_state(3), 2, 5)
        assert not fasa_fast.extension_loaded()
        assert get_backend("cpu") == "reference", get_backend("cpu")
        assert state[2].tolist() == want[2].tolist(), (state[2], want[2])
        torch.testing.assert_close(state[0].double(), want[0], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(state[1].double(), want[1], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(d.double(), fisher_oracle(state[0], state[1], 1e-6), atol=1e-5, rtol=1e-4)
        want_feats, want_labels, want_counts = sample_oracle(*state, prob, 3, 0, 2, 5)
        assert labels.tolist() == want_labels.tolist() and counts.tolist() == list(want_counts)
        torch.testing.assert_close(feats.double(), want_feats, atol=1e-5, rtol=1e-5)
        said = [w for w in caught if "compiled extension is unavailable" in str(w.message)]
        print("WARNINGS", len(said))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300
    )
    assert out.returncode == 0, out.stderr
    assert "WARNINGS 1" in out.stdout, out.stdout + out.stderr


def test_triton_kernels_ship_as_subpackage():
    import fasa_fast.kernels
    import fasa_fast.kernels.segmented_stats_update as k

    assert Path(fasa_fast.kernels.__file__).parent == ROOT / "kernels"
    assert callable(k.segmented_stats_update_triton)


def test_backend_policy_is_overridable_and_restored():
    before = _library.get_backend("cpu")
    with _library.use_backend("cpu", "reference"):
        assert _library.get_backend("cpu") == "reference"
    assert _library.get_backend("cpu") == before
    with pytest.raises(ValueError, match="backend: expected one of"):
        _library.set_backend("cpu", "fortran")
