"""Benchmark set-up: LVIS-shaped inputs and the quick mode used by the test command.

``--quick`` runs every benchmark once on small shapes (the benchmark code is checked, no
timing claim); without it shapes are LVIS v1's: C = 1203, D = 1024, N = 1024 RoIs with 256
positives drawn from the real training instance distribution, read from
``benchmarks/data/lvis_v1_train_category_stats.json`` (LVIS v1 train category statistics: id,
name, frequency group, image and instance counts; ``$FASA_FAST_LVIS_STATS`` overrides).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_STATS = ROOT / "benchmarks" / "data" / "lvis_v1_train_category_stats.json"


def pytest_addoption(parser):
    parser.addoption(
        "--quick",
        action="store_true",
        help="run every benchmark once on small shapes (checks the code, measures nothing)",
    )


@dataclass(frozen=True)
class Shape:
    num_classes: int
    dim: int
    rois: int
    positives: int


@pytest.fixture(scope="session")
def quick(request) -> bool:
    return request.config.getoption("--quick")


@pytest.fixture(scope="session")
def shape(quick) -> Shape:
    return Shape(40, 64, 128, 32) if quick else Shape(1203, 1024, 1024, 256)


@pytest.fixture(scope="session")
def instance_counts(shape) -> torch.Tensor:
    """Per-class training instance counts of LVIS v1 (the first C classes in quick mode)."""
    path = Path(os.environ.get("FASA_FAST_LVIS_STATS", DEFAULT_STATS))
    if not path.is_file():
        pytest.fail(f"LVIS category statistics not found at {path}; set FASA_FAST_LVIS_STATS")
    categories = sorted(json.loads(path.read_text()), key=lambda c: c["id"])
    counts = torch.tensor([c["instance_count"] for c in categories], dtype=torch.float64)
    return counts[: shape.num_classes]


@pytest.fixture
def run(benchmark, quick):
    """``run(fn, *args)``: time fn (once in quick mode) and return its result."""

    def _run(fn, *args, **kwargs):
        if quick:
            return benchmark.pedantic(fn, args=args, kwargs=kwargs, rounds=1, iterations=1)
        return benchmark(fn, *args, **kwargs)

    return _run


def pytest_benchmark_update_machine_info(config, machine_info):
    """Versions and device next to every number."""
    import platform

    import fasa_fast
    from fasa_fast.ops import get_backend

    machine_info["versions"] = {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "fasa_fast": fasa_fast.__version__,
    }
    for name in ("triton", "mmdet", "mmcv", "mmengine"):
        try:
            machine_info["versions"][name] = __import__(name).__version__
        except ImportError:
            pass
    machine_info["torch_threads"] = torch.get_num_threads()
    machine_info["cuda_device"] = (
        torch.cuda.get_device_name() if torch.cuda.is_available() else None
    )
    machine_info["backends"] = {d: get_backend(d) for d in ("cpu", "cuda")}
    machine_info["quick"] = config.getoption("--quick")


def pytest_benchmark_update_json(config, benchmarks, output_json):
    """FASA / plain ratios of the paired benchmarks of this run (``extra_info['pair']``)."""
    pairs: dict[str, dict[str, float]] = {}
    for bench in output_json["benchmarks"]:
        info = bench.get("extra_info", {})
        if "pair" in info:
            pairs.setdefault(info["pair"], {})[info["variant"]] = bench["stats"]["median"]
    output_json["overhead"] = {
        name: {"plain_s": v["plain"], "fasa_s": v["fasa"], "ratio": v["fasa"] / v["plain"]}
        for name, v in pairs.items()
        if "plain" in v and "fasa" in v
    }
