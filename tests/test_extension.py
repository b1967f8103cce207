"""The foundation: the built extension, its registrations, the CUDA part, the fallback."""

from __future__ import annotations

import importlib.util
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
from fasa_fast.ops._registry import NAMESPACE, OPS

ROOT = Path(__file__).resolve().parents[1]


def cuda_should_be_built() -> bool:
    """What setup.py promises: a CUDA torch plus a CUDA toolkit of torch's CUDA major version
    (torch compiles nothing across majors), unless FORCE_CUDA=0."""
    if os.environ.get("FORCE_CUDA") == "0" or torch.version.cuda is None:
        return False
    spec = importlib.util.spec_from_file_location("fasa_fast_setup", ROOT / "setup.py")
    setup = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(setup)  # not __main__: nothing is built
    home = setup.real_cuda_home()
    if not home or not os.path.exists(os.path.join(home, "bin", "nvcc")):
        return False
    found = setup.toolkit_version(home)
    return found is None or found.split(".")[0] == torch.version.cuda.split(".")[0]


def test_extension_loaded():
    assert fasa_fast.extension_loaded(), fasa_fast.extension_error()


@pytest.mark.parametrize("name", sorted(OPS))
def test_cpu_kernels_registered_by_extension(name):
    assert torch._C._dispatch_has_kernel_for_dispatch_key(f"{NAMESPACE}::{name}", "CPU")
    assert _library.native_available("cpu")


@pytest.mark.parametrize("name", sorted(OPS))
def test_schema_is_defined_once_from_the_registry(name):
    # The op module declares the schema; the extension only registers kernels for it.
    op = getattr(torch.ops.fasa_fast, name).default
    assert str(op._schema) == f"{NAMESPACE}::{name}{OPS[name].schema}"
    dump = torch._C._dispatch_dump(f"{NAMESPACE}::{name}")
    definition = next(line for line in dump.splitlines() if line.startswith("debug:"))
    # defined from Python: torch >= 2.7 records the file (_library.py), older ones "/dev/null";
    # never the extension's sources
    assert "csrc" not in definition and (
        "_library.py" in definition or "/dev/null" in definition
    ), dump


def test_extension_defines_no_schema():
    sources = list((ROOT / "csrc").rglob("*.cpp")) + list((ROOT / "csrc").rglob("*.cu"))
    assert sources
    for path in sources:
        text = path.read_text()
        assert "TORCH_LIBRARY(" not in text and "m.def(" not in text, path


# (case id, argument index to replace, replacement, message) for a direct call of the C++ CPU
# kernel of segmented_stats_update_, bypassing the Python wrapper's checks.
BAD_DIRECT_STATS = [
    (
        "features-1d",
        0,
        torch.zeros(6),
        r"features: expected a 2-D \[N, D\] tensor, got shape \[6\]",
    ),
    (
        "features-int",
        0,
        torch.zeros(6, 4, dtype=torch.int32),
        "features: expected dtype Float, Half, BFloat16, got Int",
    ),
    (
        "labels-short",
        1,
        torch.zeros(5, dtype=torch.long),
        r"labels: expected shape \[6\] \(N rows of features\), got \[5\]",
    ),
    ("labels-float", 1, torch.zeros(6), "labels: expected dtype Long, Int, got Float"),
    (
        "mean-wrong-d",
        2,
        torch.zeros(3, 5),
        r"mean: expected shape \[3, 4\] \(D columns of features\), got \[3, 5\]",
    ),
    (
        "std-wrong-shape",
        3,
        torch.zeros(2, 4),
        r"std: expected shape \[3, 4\] \(as mean\), got \[2, 4\]",
    ),
    (
        "std-double",
        3,
        torch.zeros(3, 4, dtype=torch.float64),
        "std: expected dtype Float, got Double",
    ),
    (
        "seen-wrong-c",
        4,
        torch.zeros(2, dtype=torch.long),
        r"seen: expected shape \[3\] \(C of mean\), got \[2\]",
    ),
    ("mean-strided", 2, torch.zeros(4, 3).t(), "mean: expected a contiguous tensor"),
    ("momentum", 5, 1.5, r"momentum: expected a value in \[0, 1\], got 1.5"),
]


@pytest.mark.parametrize("case", BAD_DIRECT_STATS, ids=[c[0] for c in BAD_DIRECT_STATS])
def test_cpp_checks_name_the_tensor_and_what_came(case):
    if not _library.native_available("cpu"):
        pytest.skip("the extension's own checks are under test")
    _, index, replacement, message = case
    args = [
        torch.zeros(6, 4),
        torch.zeros(6, dtype=torch.long),
        torch.zeros(3, 4),
        torch.zeros(3, 4),
        torch.zeros(3, dtype=torch.long),
        0.1,
        False,
    ]
    args[index] = replacement
    with pytest.raises(RuntimeError, match=message):
        torch.ops.fasa_fast.segmented_stats_update_(*args)


def test_cpp_checks_of_fisher_and_sample_name_the_tensor():
    if not _library.native_available("cpu"):
        pytest.skip("the extension's own checks are under test")
    mean, std = torch.zeros(3, 4), torch.ones(3, 4)
    with pytest.raises(
        RuntimeError, match=r"mean: expected D >= 1 feature dimensions, got shape \[3, 0\]"
    ):
        torch.ops.fasa_fast.fisher_distance(torch.zeros(3, 0), torch.zeros(3, 0), 1e-6)
    with pytest.raises(RuntimeError, match="eps: expected >= 0, got -1"):
        torch.ops.fasa_fast.fisher_distance(mean, std, -1.0)
    seen, prob, rng = (
        torch.ones(3, dtype=torch.long),
        torch.ones(3),
        torch.zeros(2, dtype=torch.long),
    )
    with pytest.raises(RuntimeError, match=r"prob: expected shape \[3\] \(C of mean\), got \[4\]"):
        torch.ops.fasa_fast.sample_virtual_features(mean, std, seen, torch.ones(4), rng, 1, 4)
    with pytest.raises(RuntimeError, match="rng_state: expected dtype Long, got Int"):
        torch.ops.fasa_fast.sample_virtual_features(mean, std, seen, prob, rng.int(), 1, 4)
    with pytest.raises(RuntimeError, match="k: expected >= 1, got 0"):
        torch.ops.fasa_fast.sample_virtual_features(mean, std, seen, prob, rng, 0, 4)


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
    for name in OPS:
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
