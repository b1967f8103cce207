"""The CUDA kernels of ``csrc/cuda/*_device.cuh`` run on the CPU under a host emulation of the CUDA
execution model (``emulator.h``), for tests on machines without a GPU.

``load()`` compiles ``launches.cpp`` with the host compiler (g++, a few seconds) into
``build/cuda_emulation/<hash of the sources and the command>/`` and reuses that build while
nothing changes. The op wrappers below take CPU tensors, mirror the host side of the ``.cu``
launchers (contiguous copies, std -> variance, buffers) and allocate every output pre-filled with
NaN or a garbage value, so an element a kernel never writes shows. ``schedule`` picks how the
threads of a block interleave (see ``emulator.h``): ``"forward"`` and ``"reverse"`` run them one
at a time between barriers in thread order or reverse thread order, ``"concurrent"`` lets them
run freely.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
BUILD_DIR = ROOT / "build" / "cuda_emulation"
SOURCES = [
    HERE / "emulator.h",
    HERE / "launches.cpp",
    ROOT / "csrc" / "philox.h",
    *sorted((ROOT / "csrc" / "cuda").glob("*.h")),
    *sorted((ROOT / "csrc" / "cuda").glob("*.cuh")),
]
SCHEDULES = {"concurrent": 0, "forward": 1, "reverse": 2}
TIMEOUT_MS = 30_000  # bounds every barrier wait; barrier misuse is detected without it
GARBAGE = -7_777_777  # fills integer outputs before a launch

_SCALAR_TYPES = {torch.float32: 0, torch.float16: 1, torch.bfloat16: 2}
_LABEL_TYPES = {torch.int64: 0, torch.int32: 1}
_P, _I, _I64 = ctypes.c_void_p, ctypes.c_int, ctypes.c_int64
_F, _B = ctypes.c_float, ctypes.c_bool
_RUN = [_I, _I64]  # schedule, timeout_ms
_SIGNATURES = {
    "fasa_emu_segmented_stats_update": [_I, _I, _P, _P, _P, _P, _P, _I64, _I64, _I64, _F, _B, _P, *_RUN],
    "fasa_emu_fisher_distance": [_P, _P, _P, _I64, _I64, _F, *_RUN],
    "fasa_emu_select_classes": [_P, _P, _P, _P, _P, _P, _P, _I64, _I64, _I64, *_RUN],
    "fasa_emu_fill_rows": [_P, _P, _P, _P, _P, _P, _P, _P, _I64, _I64, *_RUN],
    "fasa_emu_neighbour_sum": [_P, _P, _I, _I, _B, *_RUN],
    "fasa_emu_misused_barrier": [_I, _I, _I, _I, *_RUN],
    "fasa_emu_index": [_P, _P, _P, *_RUN],
    "fasa_emu_shared_isolation": [_P, _I, _I, *_RUN],
    "fasa_emu_atomic_count": [_P, _I, _I, _I, *_RUN],
}  # fmt: skip


class EmulatedLaunchError(RuntimeError):
    """A launch failed inside the emulator (divergent barrier, timeout, bad launch shape)."""


def compile_command(output: Path) -> list[str]:
    cxx = os.environ.get("CXX", "g++")
    return [
        cxx,
        "-std=c++20",
        "-O2",
        "-shared",
        "-fPIC",
        "-pthread",
        "-fvisibility=hidden",
        "-Wall",
        "-Wno-unknown-pragmas",  # `#pragma unroll` is for nvcc
        f"-I{Path(torch.__file__).parent / 'include'}",  # c10's Half and BFloat16
        str(HERE / "launches.cpp"),
        "-o",
        str(output),
    ]


def _build_key() -> str:
    digest = hashlib.sha256()
    digest.update(" ".join(compile_command(Path("out"))).encode())
    digest.update(torch.__version__.encode())
    for path in SOURCES:
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


@functools.cache
def load() -> ctypes.CDLL:
    """The compiled emulation, built on first use and cached by source hash."""
    target = BUILD_DIR / _build_key() / "libfasa_cuda_emulation.so"
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        # Build beside the target and rename: concurrent test runs never load a partial file.
        with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
            partial = Path(tmp) / target.name
            result = subprocess.run(compile_command(partial), capture_output=True, text=True)
            if result.returncode != 0:
                raise RuntimeError(f"building the CUDA emulation failed:\n{result.stderr}")
            shutil.move(partial, target)
    lib = ctypes.CDLL(str(target))
    for name, argtypes in _SIGNATURES.items():
        getattr(lib, name).argtypes = argtypes
        getattr(lib, name).restype = ctypes.c_int
    lib.fasa_emu_last_error.restype = ctypes.c_char_p
    return lib


def _launch(name: str, *args, schedule: str, timeout_ms: int = TIMEOUT_MS) -> None:
    lib = load()
    if getattr(lib, name)(*args, SCHEDULES[schedule], timeout_ms) != 0:
        raise EmulatedLaunchError(lib.fasa_emu_last_error().decode())


def _ptr(t: torch.Tensor) -> int:
    assert t.device.type == "cpu" and t.is_contiguous(), (
        "emulated kernels take contiguous CPU tensors"
    )
    return t.data_ptr()


def segmented_stats_update_(
    features,
    labels,
    mean,
    std,
    seen,
    momentum=0.1,
    momentum_on_var=False,
    nonfinite=None,
    *,
    schedule,
) -> None:
    """``segmented_stats_update_cuda`` of ``csrc/cuda``: updates mean / std / seen (and the
    ``nonfinite`` counter, when given) in place."""
    assert features.shape[0] > 0 and mean.shape[0] > 0, "the launcher returns for N = 0 or C = 0"
    x, lab = features.contiguous(), labels.contiguous()
    _launch(
        "fasa_emu_segmented_stats_update",
        _SCALAR_TYPES[x.dtype],
        _LABEL_TYPES[lab.dtype],
        _ptr(x),
        _ptr(lab),
        _ptr(mean),
        _ptr(std),
        _ptr(seen),
        x.shape[0],
        x.shape[1],
        mean.shape[0],
        momentum,
        momentum_on_var,
        None if nonfinite is None else _ptr(nonfinite),
        schedule=schedule,
    )


def fisher_distance(mean, std, eps=1e-6, *, schedule) -> torch.Tensor:
    """``fisher_distance_cuda``: the [C, C] matrix, NaN wherever the kernel wrote nothing."""
    n_classes, dim = mean.shape
    assert n_classes > 0, "the launcher returns before launching for C = 0"
    out = torch.full((n_classes, n_classes), float("nan"))
    mu, var = mean.contiguous(), std.square().contiguous()
    _launch("fasa_emu_fisher_distance", _ptr(mu), _ptr(var), _ptr(out), n_classes, dim, eps, schedule=schedule)  # fmt: skip
    return out


def sample_virtual_features(
    mean, std, seen, prob, rng_state, k=1, capacity=64, key=None, *, schedule
):
    """``sample_virtual_features_cuda``: both launches, rng_state advanced in place; the key is
    ``key[0]`` when given, else ``rng_state[0]`` (the launcher passes the same pointer).

    Between the launches the slot map is checked, so that a slot the selection kernel left
    unwritten fails here instead of sending the fill kernel out of bounds.
    """
    n_classes, dim = mean.shape
    assert n_classes > 0, "the launcher handles C = 0 without a kernel"
    features = torch.full((capacity, dim), float("nan"))
    labels = torch.full((capacity,), GARBAGE, dtype=torch.long)
    counts = torch.full((2,), GARBAGE, dtype=torch.long)
    slots = torch.full((2, max(capacity, 1)), GARBAGE, dtype=torch.int32)
    slot_class, slot_replica = slots[0], slots[1]
    mu, sigma, seen_c, prob_c = (t.contiguous() for t in (mean, std, seen, prob))
    _launch(
        "fasa_emu_select_classes",
        _ptr(seen_c),
        _ptr(prob_c),
        _ptr(rng_state if key is None else key),
        _ptr(rng_state),
        _ptr(slot_class),
        _ptr(slot_replica),
        _ptr(counts),
        n_classes,
        k,
        capacity,
        schedule=schedule,
    )
    used = slot_class[:capacity]
    bad = ((used < -1) | (used >= n_classes)).nonzero().flatten().tolist()
    assert not bad, f"slot_class: expected -1 or a class in [0, {n_classes}), got {used[bad].tolist()} at slots {bad}"  # fmt: skip
    replica = slot_replica[:capacity][used >= 0]
    assert ((replica >= 0) & (replica < k)).all(), f"slot_replica: expected values in [0, {k}), got {replica.tolist()}"  # fmt: skip
    if capacity > 0:
        _launch(
            "fasa_emu_fill_rows",
            _ptr(mu),
            _ptr(sigma),
            _ptr(rng_state if key is None else key),
            _ptr(rng_state),
            _ptr(slot_class),
            _ptr(slot_replica),
            _ptr(features),
            _ptr(labels),
            dim,
            capacity,
            schedule=schedule,
        )
    return features, labels, counts


# ---- the emulator's own test kernels (tests/test_cuda_emulation.py) --------------------------


def neighbour_sum(values: torch.Tensor, threads: int, *, barrier: bool, schedule: str):
    """out[i] = values[i - 1] + values[i + 1] within each block of ``threads`` elements."""
    out = torch.full_like(values, float("nan"))
    _launch("fasa_emu_neighbour_sum", _ptr(values), _ptr(out), values.numel() // threads, threads, barrier, schedule=schedule)  # fmt: skip
    return out


def misused_barrier(
    mode: int, threads: int, *, schedule: str, stalled=0, stall_ms=0, timeout_ms=TIMEOUT_MS
):
    """Mode 0: some threads return before a barrier; 1: two barriers in an if / else;
    2: thread ``stalled`` sleeps ``stall_ms`` before the barrier."""
    _launch("fasa_emu_misused_barrier", mode, threads, stalled, stall_ms, schedule=schedule, timeout_ms=timeout_ms)  # fmt: skip


def thread_indices(grid: tuple, block: tuple, *, schedule: str) -> torch.Tensor:
    """[blocks * threads, 8]: threadIdx xyz, blockIdx xyz, threads per block, blocks per grid."""
    n = grid[0] * grid[1] * grid[2] * block[0] * block[1] * block[2]
    out = torch.full((n, 8), GARBAGE, dtype=torch.int32)
    grid_t, block_t = (torch.tensor(v, dtype=torch.int32) for v in (grid, block))
    _launch("fasa_emu_index", _ptr(out), _ptr(grid_t), _ptr(block_t), schedule=schedule)
    return out


def shared_isolation(blocks: int, threads: int, *, schedule: str) -> torch.Tensor:
    out = torch.full((blocks,), -1.0)
    _launch("fasa_emu_shared_isolation", _ptr(out), blocks, threads, schedule=schedule)
    return out


def atomic_count(blocks: int, threads: int, reps: int, *, schedule: str) -> int:
    counter = torch.zeros(1, dtype=torch.long)
    _launch("fasa_emu_atomic_count", _ptr(counter), blocks, threads, reps, schedule=schedule)
    return int(counter)
