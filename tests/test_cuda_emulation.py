"""The CUDA kernels of csrc/cuda/*_device.cuh executed on the CPU, one host thread per CUDA thread
(tests/cuda_emulation), against the float64 oracles: the case tables of the op tests, the shapes
only large inputs reach (tests/cases.py), and the emulator's own guarantees (a missing barrier
gives a wrong answer, a divergent barrier fails instead of hanging)."""

from __future__ import annotations

import functools
import re
import time
import zlib
from pathlib import Path

import pytest
import torch

from fasa_fast.ops import _library, make_rng_state, sample_virtual_features
from tests import cuda_emulation as emu
from tests.cases import (
    FISHER_LARGE_SHAPES,
    FISHER_SHAPES,
    FISHER_TOL,
    SAMPLE_FEATURE_TOL,
    SAMPLE_LARGE_LAYOUTS,
    SAMPLE_LAYOUTS,
    STATS_LARGE_LAYOUTS,
    STATS_LAYOUTS,
    STATS_TOL,
    fresh_state,
    sample_stats,
)
from tests.oracle import fisher_oracle, nonfinite_rows_oracle, sample_oracle, stats_update_oracle

# An empty batch never reaches the kernel: the launcher returns first.
LAUNCHED_STATS_LAYOUTS = [case for case in STATS_LAYOUTS if case[1] > 0]
SCHEDULES = list(emu.SCHEDULES)
SERIAL = ["forward", "reverse"]  # together they expose any read-before-write across threads
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module", autouse=True)
def _built():
    emu.load()  # compile once (cached by source hash) before the timed tests below


# ---- segmented_stats_update_ --------------------------------------------------------------


def check_stats(
    features, labels, state, schedule, momentum=0.1, momentum_on_var=False, nonfinite=None
):
    mean, std, seen = state
    # A class seen for the first time must be overwritten and an absent one left alone, so its
    # old statistics can be NaN: an element the kernel should write but skips stays NaN.
    mean[seen == 0] = float("nan")
    std[seen == 0] = float("nan")
    expected = stats_update_oracle(features, labels, mean, std, seen, momentum, momentum_on_var)
    emu.segmented_stats_update_(
        features, labels, mean, std, seen, momentum, momentum_on_var, nonfinite, schedule=schedule
    )
    torch.testing.assert_close(mean.double(), expected[0], equal_nan=True, **STATS_TOL)
    torch.testing.assert_close(std.double(), expected[1], equal_nan=True, **STATS_TOL)
    assert torch.equal(seen, expected[2]), f"seen: expected {expected[2]}, got {seen}"


def stats_case(case, initialised, schedule, momentum_on_var=False):
    _, n, c, d, make_labels = case
    features = torch.randn(n, d) * 3 + 1
    state = fresh_state(c, d, "cpu", initialised)
    check_stats(features, make_labels(n, c), state, schedule, 0.1, momentum_on_var)


# The update arithmetic under one schedule, the thread interleavings on one state.
@pytest.mark.parametrize("momentum_on_var", [False, True], ids=["std", "var"])
@pytest.mark.parametrize("initialised", [False, True], ids=["fresh", "carried"])
@pytest.mark.parametrize("case", LAUNCHED_STATS_LAYOUTS, ids=[c[0] for c in LAUNCHED_STATS_LAYOUTS])
def test_stats_layouts(case, initialised, momentum_on_var):
    stats_case(case, initialised, "forward", momentum_on_var)


@pytest.mark.parametrize("schedule", ["reverse", "concurrent"])
@pytest.mark.parametrize("case", LAUNCHED_STATS_LAYOUTS, ids=[c[0] for c in LAUNCHED_STATS_LAYOUTS])
def test_stats_layouts_other_schedules(case, schedule):
    stats_case(case, True, schedule)


@pytest.mark.parametrize("schedule", SCHEDULES)
@pytest.mark.parametrize("case", STATS_LARGE_LAYOUTS, ids=[c[0] for c in STATS_LARGE_LAYOUTS])
def test_stats_large_layouts(case, schedule):
    _, n, c, d, make_labels = case
    features = torch.randn(n, d) * 3 + 1
    check_stats(features, make_labels(n, c), fresh_state(c, d, "cpu", initialised=True), schedule)


@pytest.mark.parametrize("label_dtype", [torch.int64, torch.int32])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_stats_dtypes(dtype, label_dtype):
    features = (torch.randn(48, 24) * 2).to(dtype)
    labels = torch.randint(-1, 7, (48,)).to(label_dtype)
    check_stats(features, labels, fresh_state(6, 24, "cpu", initialised=True), "forward")


def test_stats_successive_steps():
    state = fresh_state(6, 10, "cpu")
    for step in range(3):
        features = torch.randn(30, 10) + step
        check_stats(features, torch.randint(0, 7, (30,)), state, SERIAL[step % 2], momentum=0.25)


@pytest.mark.parametrize("schedule", SCHEDULES)
@pytest.mark.parametrize(
    "n, d",
    [(48, 24), (2500, 40), (300, 600), (2100, 300)],
    ids=["small", "chunks", "tiles", "both"],
)
def test_stats_nonfinite_rows_skipped_and_counted_once(n, d, schedule):
    # bad rows in several row chunks and feature tiles: each is dropped from every tile's
    # statistics and counted once (not once per tile), the class with only bad rows is unseen
    gen = torch.Generator().manual_seed(n + d)
    features = torch.randn(n, d, generator=gen) * 3 + 1
    labels = torch.randint(-1, 5, (n,), generator=gen)
    labels[:3] = 0
    labels[labels == 0] = 1
    labels[:3] = 0  # class 0: three rows, all bad
    bad_rows = sorted({0, 1, 2, 5, n // 2, 1023 % n, 1024 % n, n - 1})
    for i, row in enumerate(bad_rows):
        features[row, [0, d - 1, d // 2, min(d - 1, 257)][i % 4]] = [
            float("nan"), float("inf"), float("-inf")
        ][i % 3]  # fmt: skip
    state = fresh_state(4, d, "cpu", initialised=True)
    state[2][0] = 0  # class 0 never seen: it must stay so
    counter = torch.full((1,), 7, dtype=torch.long)
    expected_bad = nonfinite_rows_oracle(features, labels, 4)
    check_stats(features, labels, state, schedule, nonfinite=counter)
    assert counter.item() == 7 + expected_bad, f"expected 7 + {expected_bad}, got {counter.item()}"
    assert state[2][0] == 0


# ---- sample_virtual_features ----------------------------------------------------------------


@pytest.mark.parametrize("schedule", SERIAL)
def test_sample_with_a_separate_key(schedule):
    # both kernels read the key from `key`, the counter from rng_state (which the first advances)
    case = SAMPLE_LAYOUTS[0]
    _, _, _, k, capacity, _ = case
    mean, std, seen, prob = sample_inputs(case)
    rng = torch.tensor([99, 0])
    feats, labels, counts = emu.sample_virtual_features(
        mean, std, seen, prob, rng, k, capacity, torch.tensor([SEED]), schedule=schedule
    )
    exp_feats, exp_labels, exp_counts = sample_expected(case, 0)
    assert torch.equal(labels, exp_labels) and counts.tolist() == list(exp_counts)
    torch.testing.assert_close(feats.double(), exp_feats, **SAMPLE_FEATURE_TOL)
    assert rng.tolist() == [99, 1]


SEED = 2**40 + 17


# Inputs and oracle results are made once per case and shared by its schedules: the float64
# oracles of the large cases take longer than the emulated kernels.
@functools.cache
def sample_inputs(case):
    _, c, d, _, _, make_prob = case
    torch.manual_seed(zlib.crc32(case[0].encode()))
    return (*sample_stats(c, d, "cpu"), make_prob(c))


@functools.cache
def sample_expected(case, call):
    _, _, _, k, capacity, _ = case
    return sample_oracle(*sample_inputs(case), SEED, call, k, capacity)


def sample_case(case, schedule, calls):
    _, _, _, k, capacity, _ = case
    mean, std, seen, prob = sample_inputs(case)
    rng = make_rng_state(SEED)
    for call in range(calls):
        feats, labels, counts = emu.sample_virtual_features(
            mean, std, seen, prob, rng, k, capacity, schedule=schedule
        )
        exp_feats, exp_labels, exp_counts = sample_expected(case, call)
        assert torch.equal(labels, exp_labels), f"labels: expected {exp_labels}, got {labels}"
        assert counts.tolist() == list(exp_counts), (
            f"counts: expected {list(exp_counts)}, got {counts.tolist()}"
        )
        torch.testing.assert_close(feats.double(), exp_feats, **SAMPLE_FEATURE_TOL)
    assert rng.tolist() == [SEED, calls], f"rng_state: expected {[SEED, calls]}, got {rng.tolist()}"


@pytest.mark.parametrize("case", SAMPLE_LAYOUTS, ids=[c[0] for c in SAMPLE_LAYOUTS])
def test_sample_layouts(case):
    sample_case(case, "forward", calls=2)


@pytest.mark.parametrize("schedule", ["reverse", "concurrent"])
@pytest.mark.parametrize("case", SAMPLE_LAYOUTS, ids=[c[0] for c in SAMPLE_LAYOUTS])
def test_sample_layouts_other_schedules(case, schedule):
    sample_case(case, schedule, calls=1)


@pytest.mark.parametrize("schedule", SCHEDULES)
@pytest.mark.parametrize("case", SAMPLE_LARGE_LAYOUTS, ids=[c[0] for c in SAMPLE_LARGE_LAYOUTS])
def test_sample_large_layouts(case, schedule):
    sample_case(case, schedule, calls=2 if schedule == "forward" else 1)


def test_sample_nothing_seen_gives_padding():
    mean, std, _ = sample_stats(8, 4, "cpu")
    seen, prob = torch.zeros(8, dtype=torch.long), torch.ones(8)
    feats, labels, counts = emu.sample_virtual_features(
        mean, std, seen, prob, make_rng_state(1), 1, 5, schedule="reverse"
    )
    assert counts.tolist() == [0, 0], f"counts: expected [0, 0], got {counts.tolist()}"
    assert (labels == -1).all() and (feats == 0).all()


@pytest.mark.skipif(not _library.native_available("cpu"), reason="no compiled extension")
def test_sample_draws_match_cpu_kernel_bit_for_bit():
    # Same Philox counters and the same host float arithmetic as csrc/cpu: equal bits, not just
    # close values (the GPU's own logf / sinf / cosf may differ in the last place).
    mean, std, seen = sample_stats(300, 37, "cpu")
    prob = torch.rand(300) * 0.2
    rng_emu, rng_cpu = make_rng_state(2024), make_rng_state(2024)
    got = emu.sample_virtual_features(mean, std, seen, prob, rng_emu, 2, 40, schedule="forward")
    with _library.use_backend("cpu", "native"):
        want = sample_virtual_features(mean, std, seen, prob, rng_cpu, 2, 40)
    for name, g, w in zip(("features", "labels", "counts"), got, want, strict=True):
        assert torch.equal(g, w), f"{name}: emulated CUDA kernel and CPU kernel differ"


# ---- fisher_distance --------------------------------------------------------------------------


@functools.cache
def fisher_inputs(case):
    _, c, d = case
    torch.manual_seed(zlib.crc32(case[0].encode()))
    mean = torch.randn(c, d) * 2
    std = torch.rand(c, d) + 0.05
    return mean, std, fisher_oracle(mean, std, 1e-6)


@pytest.mark.parametrize("schedule", SCHEDULES)
@pytest.mark.parametrize(
    "case", FISHER_SHAPES + FISHER_LARGE_SHAPES, ids=[s[0] for s in FISHER_SHAPES + FISHER_LARGE_SHAPES]
)  # fmt: skip
def test_fisher_shapes(case, schedule):
    mean, std, expected = fisher_inputs(case)
    out = emu.fisher_distance(mean, std, 1e-6, schedule=schedule)
    torch.testing.assert_close(out.double(), expected, **FISHER_TOL)
    assert torch.equal(out, out.T), "fisher_distance: expected a symmetric matrix"
    assert (out.diagonal() == 0).all(), f"diagonal: expected zeros, got {out.diagonal()}"


# ---- the emulator itself ----------------------------------------------------------------------


@pytest.mark.parametrize("schedule", SERIAL)
def test_missing_barrier_gives_wrong_answer(schedule):
    values = torch.arange(2 * 64, dtype=torch.float32)
    blocks = values.view(2, 64)
    expected = (blocks.roll(1, dims=1) + blocks.roll(-1, dims=1)).flatten()
    with_barrier = emu.neighbour_sum(values, 64, barrier=True, schedule=schedule)
    assert torch.equal(with_barrier, expected), "with the barrier: wrong neighbour sums"
    without = emu.neighbour_sum(values, 64, barrier=False, schedule=schedule)
    assert not torch.equal(without, expected), "a missing barrier went unnoticed"


@pytest.mark.parametrize("schedule", SCHEDULES)
@pytest.mark.parametrize(
    "mode, message",
    [
        (0, r"returned.*divergent"),
        (1, r"two different __syncthreads\(\): launches\.cpp:\d+ and launches\.cpp:\d+"),
    ],
    ids=["some-threads-return", "two-barriers"],
)
def test_divergent_barrier_fails_without_waiting_for_timeout(mode, message, schedule):
    start = time.monotonic()
    with pytest.raises(emu.EmulatedLaunchError, match=message):
        emu.misused_barrier(mode, 64, schedule=schedule)
    elapsed = time.monotonic() - start
    assert elapsed < emu.TIMEOUT_MS / 1000 / 2, f"detected after {elapsed:.1f} s: by the timeout"


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_stuck_thread_times_out(schedule):
    # The thread that runs last in the schedule stalls while the others wait at the barrier.
    stalled = 0 if schedule == "reverse" else 31
    start = time.monotonic()
    with pytest.raises(emu.EmulatedLaunchError, match="timed out after 50 ms"):
        emu.misused_barrier(2, 32, schedule=schedule, stalled=stalled, stall_ms=800, timeout_ms=50)
    assert time.monotonic() - start < 10


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_every_thread_of_every_block_runs_with_its_indices(schedule):
    # Each thread writes its indices into the slot they name: a thread that never runs, or two
    # threads given the same indices, leave a garbage slot. No two block sides are coprime, so
    # a mixed-up index formula cannot come out as a permutation of the right one.
    grid, block = (3, 2, 2), (8, 4, 2)
    out = emu.thread_indices(grid, block, schedule=schedule)
    expected = [
        [tx, ty, tz, bx, by, bz, 8 * 4 * 2, 3 * 2 * 2]
        for bz in range(2) for by in range(2) for bx in range(3)
        for tz in range(2) for ty in range(4) for tx in range(8)
    ]  # fmt: skip
    assert out.tolist() == expected


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_shared_memory_is_per_block_and_poisoned(schedule):
    out = emu.shared_isolation(3, 32, schedule=schedule)
    assert out[0].item() == 42.0, f"block 0: expected its own write 42, got {out[0].item()}"
    assert out[1:].isnan().all(), f"blocks 1, 2: expected never-written (NaN), got {out[1:]}"


def test_atomic_add_loses_no_update():
    assert emu.atomic_count(4, 256, 200, schedule="concurrent") == 4 * 256 * 200


def test_every_kernel_lives_in_a_shared_header_and_is_emulated():
    launches = (ROOT / "tests" / "cuda_emulation" / "launches.cpp").read_text()
    for cu in sorted((ROOT / "csrc" / "cuda").glob("*.cu")):
        assert "__global__" not in cu.read_text(), f"{cu.name}: kernel bodies belong in a .cuh"
    kernels = []
    for header in sorted((ROOT / "csrc" / "cuda").glob("*.cuh")):
        text = re.sub(r"__launch_bounds__\([^)]*\)", "", header.read_text())
        kernels += re.findall(r"__global__\s+void\s+(\w+)\s*\(", text)
    assert kernels, "found no __global__ function in csrc/cuda/*_device.cuh"
    missing = [name for name in kernels if f"fasa_fast::{name}" not in launches]
    assert not missing, f"kernels not launched by tests/cuda_emulation/launches.cpp: {missing}"
