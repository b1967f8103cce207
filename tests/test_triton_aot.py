"""Every Triton kernel of ``fasa_fast.kernels``, in every specialisation its launcher plans,
compiled ahead of time for sm_90 with Triton's compiler and the ptxas it ships (no GPU needed).

The CPU interpreter accepts programs the compiler rejects, so the interpreted op tests alone
do not show that the kernels build for the GPU. The specialisations come from the launchers'
own plans (``*_launches`` in each kernel module) over the feature/label dtypes the ops accept,
both values of each flag and problem sizes around every power of two up to 4096 (block sizes
are capped ``next_power_of_2`` of a size, at least 2, so these reach all of them); each plan is bound by
Triton's own binder, as a launch is, so pointer alignment and integer specialisations (a
size of 1, a multiple of 16) match; only the stats update's row count is held at one value.
A kernel fails the test on a register spill (ptxas's spill stores / loads, asked whenever the
cubin has a stack frame or local memory) or on shared memory above 48 KB unless
``SHARED_OPT_IN`` names it. ``pytest -s`` prints the table of registers and memory.

About 220 specialisations: ~2 CPU-minutes cold, spread over the cores; Triton's on-disk cache
makes later runs take seconds of compiling.

The compile runs in a child process without ``TRITON_INTERPRET``: ``tests/conftest.py`` sets
it on a machine without a GPU, and under it ``@triton.jit`` makes interpreter objects that
cannot be compiled.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys

import pytest
import torch

from fasa_fast.ops import _library
from fasa_fast.ops._validate import FEATURE_DTYPES
from tests.aot_compile_triton import SHARED_OPT_IN, TARGET
from tests.kernel_resources import SHARED_LIMIT, format_table

pytestmark = pytest.mark.skipif(not _library.triton_available(), reason="triton not installed")


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    work = tmp_path_factory.mktemp("triton_aot")
    out = work / "records.json"
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    # the child imports what this process imports (fasa_fast, tests), whatever its cwd
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    code = "import sys; from tests.aot_compile_triton import compile_all; compile_all(sys.argv[1])"
    proc = subprocess.run(
        [sys.executable, "-c", code, str(out)], cwd=work, env=env, capture_output=True,
        text=True, timeout=1200,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]
    result = json.loads(out.read_text())
    records = result["records"]
    rows = [
        (r["kernel"], ", ".join(f"{k}={v}" for k, v in r["constexprs"].items()),
         " ".join(v for v in r["signature"].values() if v.startswith("*")),
         " ".join(n.removesuffix("_ptr") for n in r["multiple_of_16"]),
         r["num_warps"], *(r.get(c, "?") for c in ("registers", "spill_bytes", "stack", "local", "static_shared",
                                   "dynamic_shared")),
         "ERROR" if "error" in r else "")
        for r in records
    ]  # fmt: skip
    print(f"\nTriton kernels, {len(records)} specialisations compiled for sm_{TARGET[1]}:")
    header = ("kernel", "constexprs", "pointers", "16-byte aligned / multiple of 16", "warps", "regs",
              "spilled", "stack", "local", "static smem", "dynamic smem", "")  # fmt: skip
    print(format_table(rows, header))
    return result


def test_compiled_without_the_interpreter(compiled):
    # This process may run the kernels interpreted (conftest sets TRITON_INTERPRET=1 without a
    # GPU); the child must compile real JIT functions all the same.
    assert compiled["triton_interpret"] is None
    assert compiled["records"]
    assert all(r["is_jit_function"] for r in compiled["records"]), {
        r["jit_type"] for r in compiled["records"]
    }


def test_every_kernel_is_planned_and_compiled(compiled):
    planned = {r["kernel"] for r in compiled["records"]}
    assert set(compiled["kernels"]) == planned, "a kernel that no launcher plan covers"
    errors = [
        (r["kernel"], r["constexprs"], r["signature"], r["error"])
        for r in compiled["records"]
        if "error" in r
    ]
    assert not errors, "\n\n".join(map(str, errors))


def test_every_specialisation_of_the_launchers_is_compiled(compiled):
    # the plans cover each accepted dtype, both flag values and every block size cap
    records = compiled["records"]
    stats = [r for r in records if r["kernel"] == "_segmented_stats_update_kernel"]
    feature_types = {r["signature"]["x_ptr"] for r in stats}
    # the launcher sorts the labels (of either accepted dtype) into int64 row indices
    assert len(feature_types) == len(FEATURE_DTYPES)
    assert {r["signature"]["order_ptr"] for r in stats} == {"*i64"}
    assert {r["constexprs"]["MOMENTUM_ON_VAR"] for r in stats} == {False, True}
    from fasa_fast.kernels import fisher_distance, sample_virtual_features, segmented_stats_update

    caps = {
        ("_segmented_stats_update_kernel", "BLOCK_D"): segmented_stats_update.MAX_BLOCK_D,
        ("_fisher_distance_kernel", "BLOCK_D"): fisher_distance.MAX_BLOCK_D,
        ("_select_classes_kernel", "BLOCK_C"): sample_virtual_features.MAX_BLOCK_C,
        ("_fill_rows_kernel", "BLOCK_Q"): sample_virtual_features.MAX_BLOCK_Q,
    }
    for (kernel, block), cap in caps.items():
        got = {r["constexprs"][block] for r in records if r["kernel"] == kernel}
        # every width from 2 (no 1-wide blocks: kernels/_launch.py `lanes`) up to the cap
        want = {2**i for i in range(1, cap.bit_length())}
        assert got == want, (kernel, block, sorted(got))


def test_no_register_spills(compiled):
    records = [r for r in compiled["records"] if "error" not in r]
    if "registers" not in records[0]:
        pytest.skip("no cuobjdump to read the cubins with")
    spilling = [(r["kernel"], r["constexprs"], r["signature"]) for r in records if r["spill_bytes"]]
    assert not spilling, f"specialisations that spill registers: {spilling}"


def shared_over_limit(records: list[dict], opt_in: dict[str, int]) -> list[tuple]:
    """Specialisations whose shared memory (dynamic + the cubin's static) exceeds 48 KB, or
    the larger figure ``opt_in`` allows their kernel."""
    return [
        (r["kernel"], r["constexprs"], r["dynamic_shared"] + r.get("static_shared", 0))
        for r in records
        if "error" not in r
        and r["dynamic_shared"] + r.get("static_shared", 0) > opt_in.get(r["kernel"], SHARED_LIMIT)
    ]


def test_shared_memory_check_counts_both_kinds_and_honours_opt_in():
    def record(kernel, dynamic, static):
        return {
            "kernel": kernel,
            "constexprs": {},
            "dynamic_shared": dynamic,
            "static_shared": static,
        }

    records = [record("a", SHARED_LIMIT - 1024, 1024), record("b", SHARED_LIMIT - 1023, 1024)]
    assert [r[0] for r in shared_over_limit(records, {})] == ["b"]
    assert shared_over_limit(records, {"b": SHARED_LIMIT + 1}) == []


def test_shared_memory_within_48kb_unless_opted_in(compiled):
    too_big = shared_over_limit(compiled["records"], SHARED_OPT_IN)
    assert not too_big, f"shared memory above {SHARED_LIMIT} bytes without an opt-in: {too_big}"


# The launchers' device guard: Triton launches on the current CUDA device, so each launcher
# makes the tensors' device current around its launches.


def test_launchers_take_the_reference_parameters():
    """The Triton launchers and plans are called, and report their signature, as the op's
    reference declares it (``takes_arguments_of``); a plan's own outputs come keyword-only."""
    import inspect

    from fasa_fast.kernels import sample_virtual_features as svf
    from fasa_fast.kernels import segmented_stats_update as ssu
    from fasa_fast.kernels._launch import takes_arguments_of

    from fasa_fast.ops import reference

    def names(function):
        return list(inspect.signature(function).parameters)

    sample = names(reference.sample_virtual_features_reference)
    stats = names(reference.segmented_stats_update_reference)
    assert names(svf.sample_virtual_features_triton) == sample
    assert names(svf.sample_virtual_features_launches) == [*sample, "features", "labels", "counts"]
    assert names(ssu.segmented_stats_update_triton) == names(ssu.segmented_stats_update_launches)
    assert names(ssu.segmented_stats_update_launches) == stats

    def spec(a, b, c=3):
        """the op's parameters"""

    @takes_arguments_of(spec)
    def plan(op, *, out):
        return op.a, op.b, op.c, out

    assert plan(1, 2, out=4) == (1, 2, 3, 4)  # the default applied
    assert plan(b=2, a=1, c=5, out=4) == (1, 2, 5, 4)
    with pytest.raises(TypeError, match="'b'"):
        plan(1, out=4)
    with pytest.raises(TypeError):
        plan(1, 2, 3, 4, out=4)
    with pytest.raises(TypeError, match="keyword-only"):
        takes_arguments_of(spec)(lambda op, out: None)


@pytest.mark.parametrize(
    "op", ["segmented_stats_update", "fisher_distance", "sample_virtual_features"]
)
def test_launchers_launch_inside_a_guard_for_the_tensors_device(monkeypatch, op):
    import importlib

    from fasa_fast.kernels import _launch

    module = importlib.import_module(f"fasa_fast.kernels.{op}")
    events = []

    @contextlib.contextmanager
    def recording_guard(device):
        events.append(("enter", device))
        yield
        events.append(("exit", device))

    class RecordingKernel:
        def __init__(self, name):
            self.name = name

        def __getitem__(self, grid):
            return lambda *args, **meta: events.append(("launch", self.name))

    monkeypatch.setattr(_launch, "device_guard", recording_guard)
    kernels = [name for name in vars(module) if name.endswith("_kernel")]
    for name in kernels:
        monkeypatch.setattr(module, name, RecordingKernel(name))
    device = torch.device("meta")  # any device: the recorded guard must receive it
    mean, std = torch.empty(5, 12, device=device), torch.empty(5, 12, device=device)
    seen = torch.empty(5, dtype=torch.int64, device=device)
    if op == "segmented_stats_update":
        features = torch.empty(7, 12, device=device)
        labels = torch.empty(7, dtype=torch.int64, device=device)
        module.segmented_stats_update_triton(features, labels, mean, std, seen, 0.1, False)
    elif op == "fisher_distance":
        module.fisher_distance_triton(mean, std, 1e-6)
    else:
        prob, rng = torch.empty(5, device=device), torch.empty(2, dtype=torch.int64, device=device)
        module.sample_virtual_features_triton(mean, std, seen, prob, rng, 2, 8)
    assert events == [("enter", device), *[("launch", n) for n in kernels], ("exit", device)]


def test_device_guard_selects_the_tensors_cuda_device():
    from fasa_fast.kernels._launch import device_guard

    guard = device_guard(torch.device("cuda", 1))  # built, not entered: no GPU needed
    assert isinstance(guard, torch.cuda.device) and guard.idx == 1
    assert isinstance(device_guard(torch.device("cpu")), contextlib.nullcontext)


@pytest.mark.cuda
def test_triton_ops_on_a_device_that_is_not_current():
    if torch.cuda.device_count() < 2:
        pytest.skip("needs two CUDA devices")
    from fasa_fast.ops import fisher_distance, make_rng_state, sample_virtual_features
    from fasa_fast.ops import segmented_stats_update_ as stats_update_
    from tests.oracle import fisher_oracle, sample_oracle, stats_update_oracle

    device = torch.device("cuda", 1)
    features = torch.randn(64, 24, device=device)
    labels = torch.randint(-1, 6, (64,), device=device)
    mean, std = torch.zeros(5, 24, device=device), torch.zeros(5, 24, device=device)
    seen = torch.zeros(5, dtype=torch.int64, device=device)
    prob, rng = torch.full((5,), 0.7, device=device), make_rng_state(3, device)
    with torch.cuda.device(0), _library.use_backend("cuda", "triton"):
        expected = stats_update_oracle(features, labels, mean, std, seen, 0.1, False)
        stats_update_(features, labels, mean, std, seen)
        distances = fisher_distance(mean, std)
        sampled = sample_virtual_features(mean, std, seen, prob, rng, 2, 8)
        assert torch.cuda.current_device() == 0
    torch.testing.assert_close(mean.cpu().double(), expected[0], atol=2e-5, rtol=2e-5)
    torch.testing.assert_close(std.cpu().double(), expected[1], atol=2e-5, rtol=2e-5)
    assert torch.equal(seen.cpu(), expected[2])
    torch.testing.assert_close(
        distances.cpu().double(), fisher_oracle(mean, std, 1e-6), atol=1e-5, rtol=1e-5
    )
    exp_feats, exp_labels, exp_counts = sample_oracle(
        mean.cpu(), std.cpu(), seen.cpu(), prob.cpu(), 3, 0, 2, 8
    )
    assert torch.equal(sampled[1].cpu(), exp_labels) and sampled[2].tolist() == list(exp_counts)
    torch.testing.assert_close(sampled[0].cpu().double(), exp_feats, atol=1e-5, rtol=1e-5)
