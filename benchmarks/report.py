"""Turn a benchmark JSON (``--benchmark-json``) into the README's performance tables.

Run: ``.venv/bin/python benchmarks/report.py benchmarks/results/cpu-2026-11-25.json``
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

# LVIS v1 train: 100,170 images; 16 images per iteration is the usual 8 GPUs x 2.
LVIS_TRAIN_IMAGES = 100_170


def fmt(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds * 1e6:.1f} µs"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("json", type=Path)
    parser.add_argument("--images-per-iter", type=int, default=16)
    parser.add_argument("--adapt-images", type=int, default=500)
    args = parser.parse_args(argv)
    data = json.loads(args.json.read_text())
    machine = data["machine_info"]
    print(
        f"{data['datetime'][:10]}, {machine.get('cuda_device') or machine.get('cpu', {}).get('brand_raw', 'CPU')}, "
        f"{machine.get('torch_threads')} threads, {machine.get('versions')}, commit {data.get('commit_info', {}).get('id', '?')[:8]}\n"
    )
    print("| benchmark | implementation | median | rounds |")
    print("|---|---|---|---|")
    for bench in sorted(
        data["benchmarks"], key=lambda b: (b["name"].split("[")[0], b["stats"]["median"])
    ):
        info = bench.get("extra_info", {})
        impl = info.get("backend") or info.get("variant") or ""
        print(
            f"| {bench['name'].split('[')[0]} [{info.get('device', 'cpu')}] | {impl} | {fmt(bench['stats']['median'])} | {bench['stats']['rounds']} |"
        )
    overhead = data.get("overhead", {})
    if overhead:
        print("\n| step | plain | with FASA | overhead |")
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
            f"\nadapt() at LVIS size: {fmt(adapt['stats']['median'])} once per epoch, "
            f"{100 * share:.4f}% of an epoch of {iters:.0f} plain steps of this machine's Mask R-CNN step "
            f"(the adaptation forward over {args.adapt_images} images comes on top: about "
            f"{args.adapt_images} / {LVIS_TRAIN_IMAGES} = {100 * args.adapt_images / LVIS_TRAIN_IMAGES:.2f}% of an epoch's "
            "images, forward only)"
        )


if __name__ == "__main__":
    main()
