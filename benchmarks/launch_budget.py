"""FASA's launch budget: the ops one training step dispatches, counted without a GPU.

    python benchmarks/launch_budget.py [--steps 50] [--json PATH] [--quick]

A ``TorchDispatchMode`` records every aten / fasa_fast op the dispatcher sees during one FASA
step on CPU tensors: the engine's ``update`` and ``virtual_loss`` forward and
``loss.backward()``, and the FASA part of the mmdet box head's ``loss_and_target`` (its own
update and virtual loss, the parent head's losses stubbed out) with the backward of
``loss_cls_fasa``. Views and aliases (``t``, ``slice``, ``select``, ``detach``, ...) and
uninitialised allocations (``empty*``) are not counted: they launch no kernel. Every other op
is counted once, a ``fasa_fast`` op too (on CUDA the stats update launches one kernel on the
native backend, the draw two, see their docstrings). On a GPU each counted op is at least one
kernel launch, so the count is the floor of the step's launches and of its host time.

Shapes are LVIS v1's (C = 1203, D = 1024, 1024 RoIs with 256 positives drawn from the training
instance distribution) unless ``--quick``; the count does not depend on them. Prints the count
per backend with the ops by name and the host time per step (CPU, median over ``--steps``
steps), and writes them as JSON. ``STEP_BUDGET`` is the budget ``tests/test_launch_budget.py``
holds.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from unittest import mock

import torch
from torch.utils._python_dispatch import TorchDispatchMode

ROOT = Path(__file__).resolve().parents[1]
LVIS_STATS = ROOT / "benchmarks" / "data" / "lvis_v1_train_category_stats.json"

# Dispatched ops allowed per default FASA step (softmax virtual loss, one rank), every backend.
STEP_BUDGET = 15

# Host synchronisations: a step must never dispatch one.
HOST_SYNC_OPS = ("aten::_local_scalar_dense", "aten::item", "aten::nonzero", "aten::equal")

_ALLOCATIONS = ("empty", "empty_like", "empty_strided", "new_empty", "new_empty_strided")


def launches_kernel(func) -> bool:
    """Whether an op the dispatcher sees does work a kernel would do: not a view or alias of
    its input (a return annotated ``Tensor(a)`` without a write) and not an uninitialised
    allocation."""
    name = func._schema.name.split("::")[-1]
    if name in _ALLOCATIONS:
        return False
    return not any(
        ret.alias_info is not None and not ret.alias_info.is_write for ret in func._schema.returns
    )


class DispatchCounter(TorchDispatchMode):
    """Counts the ops that launch a kernel (``launches_kernel``), by overload name; views and
    allocations are kept apart in ``skipped``."""

    def __init__(self) -> None:
        super().__init__()
        self.counts: Counter[str] = Counter()
        self.skipped: Counter[str] = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = str(func._schema.name)
        overload = func._overloadname
        key = name if overload in ("", "default") else f"{name}.{overload}"
        (self.counts if launches_kernel(func) else self.skipped)[key] += 1
        return func(*args, **(kwargs or {}))

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def count_ops(fn: Callable[[], object]) -> DispatchCounter:
    """The ops ``fn()`` dispatches."""
    with DispatchCounter() as counter:
        fn()
    return counter


# ---- the steps ---------------------------------------------------------------------------------


def lvis_counts(num_classes: int | None = None) -> torch.Tensor:
    categories = sorted(json.loads(LVIS_STATS.read_text()), key=lambda c: c["id"])
    counts = torch.tensor([c["instance_count"] for c in categories])
    return counts if num_classes is None else counts[:num_classes]


def step_inputs(num_classes: int, dim: int, rois: int, seed: int = 0):
    """``rois`` RoI features and labels, a quarter of them positives drawn from the LVIS
    instance distribution, the rest background (label C)."""
    gen = torch.Generator().manual_seed(seed)
    counts = lvis_counts(num_classes)
    labels = torch.full((rois,), num_classes)
    labels[: rois // 4] = torch.multinomial(counts.double(), rois // 4, True, generator=gen)
    features = torch.randn(rois, dim, generator=gen)
    return features, labels


def engine_step(num_classes: int, dim: int, rois: int) -> Callable[[], torch.Tensor]:
    """One engine step: ``update``, ``virtual_loss`` (default loss) and its backward, after the
    warm-up, with every class seen (so draws happen)."""
    from fasa_fast import FASA

    fasa = FASA(num_classes, dim, lvis_counts(num_classes), warmup_epochs=0)
    fasa.seen.fill_(1)
    fasa.std.fill_(1.0)
    fc_cls = torch.nn.Linear(dim, num_classes + 1)
    features, labels = step_inputs(num_classes, dim, rois)

    def step() -> torch.Tensor:
        fc_cls.zero_grad(set_to_none=True)  # as an optimizer step leaves it (dispatches nothing)
        fasa.update(features, labels)
        loss = fasa.virtual_loss(fc_cls)
        loss.backward()
        return loss

    return step


def mmdet_head_step(num_classes: int, dim: int, rois: int) -> Callable[[], torch.Tensor]:
    """The FASA part of ``FASAShared2FCBBoxHead.loss_and_target`` (the parent head's target
    assignment and losses replaced by their precomputed result, so only what FASA adds is
    counted) and the backward of ``loss_cls_fasa``."""
    from mmdet.models.roi_heads.bbox_heads import Shared2FCBBoxHead

    from fasa_fast.mmdet.bbox_heads import FASAShared2FCBBoxHead

    categories = json.loads(LVIS_STATS.read_text())[:num_classes]
    with tempfile.TemporaryDirectory() as tmp:
        ann_file = Path(tmp) / "ann.json"
        ann_file.write_text(json.dumps({"categories": categories}))
        head = FASAShared2FCBBoxHead(
            num_classes=num_classes,
            in_channels=4,
            roi_feat_size=1,
            fc_out_channels=dim,
            fasa=dict(ann_file=str(ann_file), warmup_epochs=0, require_hook=False),
        )
    head.train()
    head.fasa.seen.fill_(1)
    head.fasa.std.fill_(1.0)
    features, labels = step_inputs(num_classes, dim, rois)
    parent_out = {
        "loss_bbox": {},
        "bbox_targets": (labels, torch.ones(rois), torch.zeros(rois, 4), torch.zeros(rois, 4)),
    }

    def step() -> torch.Tensor:
        head.zero_grad(set_to_none=True)
        head._fasa_features = features  # what the fc_cls pre-hook captured in forward
        with mock.patch.object(
            Shared2FCBBoxHead, "loss_and_target", lambda *a, **k: dict(parent_out, loss_bbox={})
        ):
            out = head.loss_and_target(None, None, None, [], None)
        loss = out["loss_bbox"]["loss_cls_fasa"]
        loss.backward()
        return loss

    return step


PATHS = {"engine": engine_step, "mmdet_head": mmdet_head_step}


def measure(path: str, backend: str, shape: tuple[int, int, int], steps: int) -> dict:
    """Count one step's ops (after two warm-up steps) and time ``steps`` steps on the CPU."""
    from fasa_fast.ops import use_backend

    with use_backend("cpu", backend):
        step = PATHS[path](*shape)
        for _ in range(2):
            step()
        counter = count_ops(step)
        times = []
        for _ in range(steps):
            start = time.perf_counter()
            step()
            times.append(time.perf_counter() - start)
    times.sort()
    return {
        "ops": counter.total,
        "ops_by_name": dict(sorted(counter.counts.items())),
        "views_and_allocations": dict(sorted(counter.skipped.items())),
        "host_time_per_step_us": {
            "median": times[len(times) // 2] * 1e6,
            "min": times[0] * 1e6,
        },
        "steps_timed": steps,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--quick", action="store_true", help="small shapes (C=40, D=64, N=128)")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    parser.add_argument("--paths", default="engine,mmdet_head")
    parser.add_argument("--backends", default=None, help="comma-separated (default: all)")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch CPU threads (1: steadier on a busy host)"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if not torch.cuda.is_available():
        os.environ.setdefault("TRITON_INTERPRET", "1")
    from fasa_fast.ops import _library

    shape = (40, 64, 128) if args.quick else (1203, 1024, 1024)
    backends = _library.available_backends("cpu")
    if args.backends:
        backends = [b for b in args.backends.split(",") if b in backends]
    results: dict = {}
    for path in args.paths.split(","):
        for backend in backends:
            # the Triton interpreter runs the kernels in numpy: count it, do not time it
            steps = 2 if backend == "triton" else args.steps
            result = measure(path, backend, shape, steps)
            results.setdefault(path, {})[backend] = result
            print(
                f"{path:10s} {backend:9s} {result['ops']:3d} ops/step (budget {STEP_BUDGET}), "
                f"host {result['host_time_per_step_us']['median']:8.0f} us/step median, "
                f"{result['host_time_per_step_us']['min']:8.0f} min: "
                + ", ".join(f"{k.split('::')[-1]} {v}" for k, v in result["ops_by_name"].items())
            )
    record = {
        "benchmark": "launch_budget",
        "command": "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        "budget": STEP_BUDGET,
        "shape": dict(zip(("num_classes", "dim", "rois"), shape, strict=True)),
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
            "torch": torch.__version__,
            "python": platform.python_version(),
            "triton_interpret": os.environ.get("TRITON_INTERPRET"),
            "load_average_1min": os.getloadavg()[0],
            "torch_threads": torch.get_num_threads(),
        },
        "results": results,
    }
    if args.json is not None:
        args.json.write_text(json.dumps(record, indent=2) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
