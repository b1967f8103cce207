"""Where FASA's per-step time goes: torch.profiler over FASA's own work in a box-head step.

    python benchmarks/profile_fasa_work.py [--device cuda] [--steps 20]

Same set-up as ``benchmarks/test_bench_box_head.py`` (LVIS shapes: 1024 RoIs, C = 1203,
D = 1024): the statistics update, the draw and the virtual loss forward + backward, profiled
over ``--steps`` steps after a warm-up. Prints the ops by self device time (self CPU time on a
CPU) and the host time per step, which shows whether the step is bound by the host's launches
or by the kernels.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.conftest import DEFAULT_STATS  # noqa: E402
from benchmarks.test_bench_box_head import BoxHead  # noqa: E402
from fasa_fast import FASA  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    device = args.device
    categories = sorted(json.loads(DEFAULT_STATS.read_text()), key=lambda c: c["id"])
    counts = torch.tensor([c["instance_count"] for c in categories])
    num_classes, dim, rois = len(counts), 1024, 1024
    gen = torch.Generator().manual_seed(0)
    labels = torch.full((rois,), num_classes)
    labels[: rois // 4] = torch.multinomial(counts.double(), rois // 4, True, generator=gen)
    head = BoxHead(num_classes, dim).to(device)
    fasa = FASA(num_classes, dim, counts, warmup_epochs=0).to(device)
    fasa.seen.fill_(1)
    fasa.std.fill_(1.0)
    x = torch.randn(rois, dim, generator=gen).to(device)
    labels = labels.to(device)

    def work():
        head.zero_grad(set_to_none=True)
        fasa.update(x, labels)
        fasa.virtual_loss(head.fc_cls).backward()

    def sync():
        if device == "cuda":
            torch.cuda.synchronize()

    for _ in range(10):
        work()
    sync()
    start = time.perf_counter()
    for _ in range(args.steps):
        work()
    host = (time.perf_counter() - start) / args.steps
    sync()
    wall = (time.perf_counter() - start) / args.steps
    print(f"{device}: host time per step {host * 1e6:.0f} us, wall per step (synced once at the "
          f"end) {wall * 1e6:.0f} us over {args.steps} steps")  # fmt: skip
    activities = [torch.profiler.ProfilerActivity.CPU]
    if device == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    with torch.profiler.profile(activities=activities) as prof:
        for _ in range(args.steps):
            work()
        sync()
    sort = "self_cuda_time_total" if device == "cuda" else "self_cpu_time_total"
    print(prof.key_averages().table(sort_by=sort, row_limit=25, max_name_column_width=50))


if __name__ == "__main__":
    main()
