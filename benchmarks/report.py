"""Turn a benchmark JSON (``--benchmark-json``) into the performance tables of docs/performance.md.

Each op row with a ``bytes`` annotation gets its floor: the bytes it must move over the copy
bandwidth measured in the same run (``test_memory_bandwidth``), or on a GPU the launch latency
(``test_launch_latency``) when that is larger. Compute-bound ops (the Fisher matrix: C^2 D / 2
divisions) sit far above a memory floor; the column says how far.

Run: ``.venv/bin/python benchmarks/report.py benchmarks/results/cpu-2026-11-25.json``
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

LVIS_TRAIN_IMAGES = 100_170  # LVIS v1 train


def fmt(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds * 1e6:.1f} µs"


def probes(benchmarks: list[dict]) -> tuple[dict[str, float], dict[str, float]]:
    """Copy bandwidth (bytes/s) and launch latency (s) per device, from this run."""
    bandwidth, latency = {}, {}
    for bench in benchmarks:
        info = bench.get("extra_info", {})
        if info.get("bandwidth_probe"):
            bandwidth[info["device"]] = info["bytes"] / bench["stats"]["median"]
        if info.get("latency_probe"):
            latency[info["device"]] = bench["stats"]["median"]
    return bandwidth, latency


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("json", type=Path)
    parser.add_argument("--images-per-iter", type=int, default=16, help="8 GPUs x 2 images")
    parser.add_argument("--adapt-images", type=int, default=500)
    args = parser.parse_args(argv)
    data = json.loads(args.json.read_text())
    machine = data["machine_info"]
    device_name = machine.get("cuda_device") or machine.get("cpu", {}).get("brand_raw", "CPU")
    commit = data.get("commit_info", {}).get("id", "?")[:8]
    print(
        f"{data['datetime'][:10]}, {device_name}, {machine.get('torch_threads')} threads, {machine.get('versions')}, commit {commit}"
    )

    bandwidth, latency = probes(data["benchmarks"])
    for device, value in bandwidth.items():
        print(f"measured {device} copy bandwidth: {value / 1e9:.1f} GB/s (bytes read + written)")
    print("\n| benchmark | implementation | median | rounds | floor | x floor |")
    print("|---|---|---|---|---|---|")
    for bench in sorted(
        data["benchmarks"], key=lambda b: (b["name"].split("[")[0], b["stats"]["median"])
    ):
        info = bench.get("extra_info", {})
        impl = info.get("backend") or info.get("variant") or ""
        median = bench["stats"]["median"]
        device = info.get("device", "cpu")
        floor_cells = " | "
        if "bytes" in info and device in bandwidth and not info.get("bandwidth_probe"):
            floor = max(info["bytes"] / bandwidth[device], latency.get(device, 0.0))
            floor_cells = f"{fmt(floor)} | {median / floor:.1f}"
        print(
            f"| {bench['name']} | {impl} | {fmt(median)} | {bench['stats']['rounds']} | {floor_cells} |"
        )

    overhead = data.get("overhead", {})
    if overhead:
        print("\n| step | plain | with FASA | difference |")
        print("|---|---|---|---|")
        for name, v in overhead.items():
            print(
                f"| {name} | {fmt(v['plain_s'])} | {fmt(v['fasa_s'])} | {100 * (v['ratio'] - 1):+.2f}% |"
            )
    extra = next(
        (b for b in data["benchmarks"] if b["name"].startswith("test_fasa_extra_work")), None
    )
    if extra and overhead:
        print(f"\nFASA's own work per step, timed alone: {fmt(extra['stats']['median'])}")
        for name, v in overhead.items():
            print(
                f"- {100 * extra['stats']['median'] / v['plain_s']:.3f}% of the plain {name} step"
            )
    adapt = next((b for b in data["benchmarks"] if b["name"].startswith("test_adaptation")), None)
    step = overhead.get("mask_rcnn")
    if adapt and step:
        iters = LVIS_TRAIN_IMAGES / args.images_per_iter
        share = adapt["stats"]["median"] / (iters * step["plain_s"])
        print(
            f"\nadapt() at LVIS size: {fmt(adapt['stats']['median'])} once per epoch, {100 * share:.4f}% of an "
            f"epoch of {iters:.0f} plain steps of this machine's Mask R-CNN step; the adaptation forward over "
            f"{args.adapt_images} images comes on top (~{100 * args.adapt_images / LVIS_TRAIN_IMAGES:.2f}% of an "
            "epoch's images, forward only)"
        )


if __name__ == "__main__":
    main()
