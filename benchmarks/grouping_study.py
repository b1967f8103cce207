"""Study of FASA's class grouping at LVIS scale: which DBSCAN defaults give meaningful groups.

Class statistics are simulated with LVIS v1's 1203 classes and their real training instance
counts (``benchmarks/data``): true class means come from S super-categories (centre + class
offset), per-dimension stds vary per class, and the *running* statistics FASA would hold are
estimated from ``min(instance_count, cap)`` samples, so rare classes carry noisier statistics,
as in training. For each grouping setting the table reports the number of groups, how many
classes sit in singleton groups, the largest group's share, the agreement with the
super-categories (adjusted Rand index, 1 = recovered exactly) and the time of one grouping
(Fisher matrix + clustering) on this machine.

Run: ``.venv/bin/python benchmarks/grouping_study.py [--dim 1024] [--supercategories 40]``
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from sklearn.metrics import adjusted_rand_score

from fasa_fast.grouping import group_classes

DATA = Path(__file__).resolve().parent / "data" / "lvis_v1_train_category_stats.json"


def simulated_statistics(dim: int, supercategories: int, spread: float, cap: int, seed: int):
    categories = sorted(json.loads(DATA.read_text()), key=lambda c: c["id"])
    counts = torch.tensor([c["instance_count"] for c in categories], dtype=torch.float64)
    num_classes = len(categories)
    gen = torch.Generator().manual_seed(seed)
    parent = torch.randint(0, supercategories, (num_classes,), generator=gen)
    centres = torch.randn(supercategories, dim, generator=gen) * 1.0
    true_mean = centres[parent] + torch.randn(num_classes, dim, generator=gen) * spread
    true_std = 0.5 + torch.rand(num_classes, dim, generator=gen)
    n = counts.clamp(max=cap)
    mean = true_mean + true_std * torch.randn(num_classes, dim, generator=gen) / n.sqrt()[:, None]
    chi = 1 + torch.randn(num_classes, dim, generator=gen) / (2 * n).sqrt()[:, None]
    std = (true_std * chi.clamp(min=0.05)).float()
    return mean.float(), std, parent, counts


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dim", type=int, default=1024)
    parser.add_argument("--supercategories", type=int, default=40)
    parser.add_argument(
        "--spread", type=float, default=0.3, help="class offset within a supercategory"
    )
    parser.add_argument(
        "--cap", type=int, default=200, help="max samples behind a running statistic"
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    mean, std, parent, _ = simulated_statistics(
        args.dim, args.supercategories, args.spread, args.cap, args.seed
    )
    seen = torch.ones(mean.shape[0], dtype=torch.long)
    settings = [("affinity", {})]
    for min_samples in (2, 3, 5):
        for quantile in (0.5, 0.9, 0.95, 1.0):
            settings.append(("dbscan", {"min_samples": min_samples, "eps_quantile": quantile}))
    print(
        f"C={mean.shape[0]} D={args.dim} supercategories={args.supercategories} spread={args.spread} cap={args.cap}"
    )
    print(
        "| method | min_samples | eps quantile | groups | classes in singletons | largest group | ARI vs supercategories | time (s) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for method, params in settings:
        start = time.perf_counter()
        groups = group_classes(mean, std, seen, method, **params)
        elapsed = time.perf_counter() - start
        sizes = torch.bincount(groups)
        singletons = int((sizes == 1).sum())
        ari = adjusted_rand_score(parent.numpy(), groups.numpy())
        print(
            f"| {method} | {params.get('min_samples', '-')} | {params.get('eps_quantile', '-')} | "
            f"{len(sizes)} | {singletons} | {sizes.max().item() / len(groups):.0%} | {ari:.2f} | {elapsed:.2f} |"
        )


if __name__ == "__main__":
    main()
