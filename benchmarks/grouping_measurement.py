"""Grouping rules measured on learned class statistics (and on the LVIS-scale simulation).

FASA groups classes by the Fisher distance of their running feature statistics (method §4). This
command measures every rule of ``RULES`` on the statistics that real training produces:

(a) ``synthetic``: the long-tailed classification example (``fasa_fast.examples``), 100 classes
    built around 10 known super-categories (class ``c`` belongs to super-category ``c % 10``):
    the statistics FASA held at every adaptation of an adaptive run, ARI against the truth;
(b) ``digits-lt``: the same on scikit-learn's digits (10 classes, no known grouping);
(c) FASA statistics saved in mmdet checkpoints (``--checkpoints``; e.g. the demo's or the hard
    detection set's per-epoch checkpoints), one row per checkpoint and FASA head;
(d) the LVIS-scale simulation of ``benchmarks/grouping_study.py`` (1203 classes with LVIS v1's
    instance counts, 40 super-categories, D = 1024), ARI against its super-categories and the
    time of one whole grouping (Fisher matrix + clustering) on this machine.

For each it reports the number of groups, the largest group's share of the classes, the share
of classes in singleton groups and, where the truth is known, the adjusted Rand index (ARI, 1 =
the super-categories recovered). Results: ``docs/reports/grouping_measurement.md``.

Run: ``python -m benchmarks.grouping_measurement --seeds 0 1 2 3 4 --checkpoints
work_dirs/demo/epoch_*.pth --out benchmarks/results/grouping-measurement-DATE.json``
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import statistics
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import adjusted_rand_score

from fasa_fast.grouping import group_classes
from fasa_fast.ops import get_backend

# (label, method, parameters): the rules measured; the first is the engine's default
RULES = [
    ("hdbscan (default)", "hdbscan", {}),
    ("hdbscan min_cluster_size=3", "hdbscan", {"min_cluster_size": 3}),
    ("dbscan q0.95 (paper rule, old default)", "dbscan", {}),
    ("dbscan q0.5", "dbscan", {"eps_quantile": 0.5}),
    ("affinity, euclidean means", "affinity", {}),
    ("affinity, fisher", "affinity", {"affinity_distance": "fisher"}),
]
ONE_GROUP = 0.9  # a largest group at or above this share counts as "(nearly) one group"
LAST = 3  # "last adaptations": the last LAST of a run


def describe(groups: torch.Tensor, truth: np.ndarray | None, seconds: float) -> dict:
    """Groups, largest share, singleton share (of the grouped classes) and ARI against
    ``truth`` (labels of the grouped classes, in class order)."""
    grouped = groups[groups >= 0].numpy()
    _, sizes = np.unique(grouped, return_counts=True)
    row = {
        "groups": int(len(sizes)),
        "largest_share": float(sizes.max() / len(grouped)),
        "singleton_share": float((sizes == 1).sum() / len(grouped)),
        "seconds": seconds,
    }
    if truth is not None:
        row["ari"] = float(adjusted_rand_score(truth, grouped))
    return row


def measure(mean, std, seen, truth=None) -> dict[str, dict]:
    """Every rule of ``RULES`` on one set of statistics."""
    out = {}
    for label, method, params in RULES:
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # affinity propagation's convergence warnings
            groups = group_classes(mean, std, seen, method, **params)
        out[label] = describe(groups, truth, time.perf_counter() - start)
    return out


def learned_classification(
    dataset: str, seeds: list[int], fixture: Path | None, epochs: int | None = None
) -> list[dict]:
    """(a)/(b): the statistics at every adaptation of the example's adaptive run, per seed
    (30 epochs on synthetic, 60 on digits-LT, as in docs/engine.md's commands, unless ``epochs``)."""
    from fasa_fast.examples.long_tailed_classification import TrainConfig, load_dataset, train

    if epochs is None:
        epochs = 30 if dataset == "synthetic" else 60
    rows = []
    for seed in seeds:
        snapshots = []

        def record(engine, summary, snapshots=snapshots):
            snapshots.append((engine.mean.clone(), engine.std.clone(), engine.seen.clone()))

        data = load_dataset(dataset, seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            train(
                data, method="adaptive", seed=seed, cfg=TrainConfig(epochs=epochs), on_adapt=record
            )
        for index, (mean, std, seen) in enumerate(snapshots):
            truth = None
            if dataset == "synthetic":  # synthetic_long_tailed: class c around centre c % 10
                truth = (torch.nonzero(seen > 0).flatten() % 10).numpy()
            rows.append(
                dict(
                    dataset=dataset,
                    seed=seed,
                    adaptation=index,
                    adaptations=len(snapshots),
                    rules=measure(mean, std, seen, truth),
                )
            )
        if fixture is not None and dataset == "synthetic" and seed == seeds[0]:
            mean, std, seen = snapshots[-1]
            fixture.parent.mkdir(parents=True, exist_ok=True)
            torch.save({"mean": mean, "std": std, "seen": seen, "seed": seed}, fixture)
        print(f"  {dataset} seed {seed}: {len(snapshots)} adaptations measured", flush=True)
    return rows


def fasa_states(path: Path):
    """(head prefix, mean, std, seen) of every FASA engine in an mmdet checkpoint."""
    state = torch.load(path, map_location="cpu", weights_only=False)
    state = state.get("state_dict", state)
    prefixes = sorted(k[: -len(".mean")] for k in state if k.endswith("fasa.mean"))
    return [(p, state[f"{p}.mean"], state[f"{p}.std"], state[f"{p}.seen"]) for p in prefixes]


def checkpoints(paths: list[Path]) -> list[dict]:
    rows = []
    for path in paths:
        for prefix, mean, std, seen in fasa_states(path):
            if int((seen > 0).sum()) < 2:
                continue
            rows.append(dict(checkpoint=str(path), head=prefix, rules=measure(mean, std, seen)))
    return rows


def lvis_simulation(spreads: list[float], dim: int = 1024) -> list[dict]:
    from benchmarks.grouping_study import simulated_statistics

    rows = []
    for spread in spreads:
        mean, std, parent, _ = simulated_statistics(dim, 40, spread, 200, 0)
        seen = torch.ones(mean.shape[0], dtype=torch.long)
        rows.append(dict(spread=spread, rules=measure(mean, std, seen, parent.numpy())))
    return rows


def _stat(values: list[float], fmt: str = ".2f") -> str:
    if not values:
        return "n/a"
    if len(values) == 1:
        return format(values[0], fmt)
    return f"{statistics.fmean(values):{fmt}} ± {statistics.stdev(values):{fmt}}"


def classification_table(rows: list[dict], with_ari: bool) -> str:
    """Per rule: over the last LAST adaptations of every seed, and over all adaptations."""
    head = "| rule | groups (last) | largest share (last) | singletons (last) |"
    head += " ARI (last) | min ARI (last) |" if with_ari else ""
    head += " adaptations with one group (all) |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for label, _, _ in RULES:
        last = [r["rules"][label] for r in rows if r["adaptation"] >= r["adaptations"] - LAST]
        every = [r["rules"][label] for r in rows]
        cells = [
            _stat([x["groups"] for x in last], ".1f"),
            _stat([x["largest_share"] for x in last]),
            _stat([x["singleton_share"] for x in last]),
        ]
        if with_ari:
            cells += [_stat([x["ari"] for x in last]), f"{min(x['ari'] for x in last):.2f}"]
        one = sum(x["largest_share"] >= ONE_GROUP for x in every)
        cells.append(f"{one} of {len(every)}")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def checkpoint_table(rows: list[dict]) -> str:
    lines = ["| checkpoint | head | rule | groups | largest share | singletons |"]
    lines.append("|---|---|---|---|---|---|")
    for row in rows:
        for label, x in row["rules"].items():
            lines.append(
                f"| {row['checkpoint']} | {row['head']} | {label} | {x['groups']} | "
                f"{x['largest_share']:.2f} | {x['singleton_share']:.2f} |"
            )
    return "\n".join(lines)


def simulation_table(rows: list[dict]) -> str:
    lines = ["| spread | rule | groups | largest share | singletons | ARI | time (s) |"]
    lines.append("|---|---|---|---|---|---|---|")
    for row in rows:
        for label, x in row["rules"].items():
            lines.append(
                f"| {row['spread']} | {label} | {x['groups']} | {x['largest_share']:.2f} | "
                f"{x['singleton_share']:.2f} | {x['ari']:.2f} | {x['seconds']:.2f} |"
            )
    return "\n".join(lines)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument(
        "--datasets", nargs="*", default=["synthetic", "digits-lt"], help="(a) and (b)"
    )
    parser.add_argument("--checkpoints", type=Path, nargs="*", default=[], help="(c)")
    parser.add_argument("--epochs", type=int, default=None, help="(a)/(b): default 30 / 60")
    parser.add_argument("--spreads", type=float, nargs="*", default=[0.3, 0.7, 1.0], help="(d)")
    parser.add_argument("--sim-dim", type=int, default=1024, help="(d): feature dimension D")
    parser.add_argument("--out", type=Path, default=None, help="JSON of every measurement")
    parser.add_argument(
        "--save-fixture", type=Path, default=None, help="the first synthetic seed's last statistics"
    )
    args = parser.parse_args(argv)
    start = time.perf_counter()
    result: dict = {
        "date": datetime.date.today().isoformat(),
        "machine": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "fasa_ops_cpu_backend": get_backend("cpu"),
            "threads": torch.get_num_threads(),
        },
        "rules": [dict(label=a, method=b, params=c) for a, b, c in RULES],
    }
    for dataset in args.datasets:
        print(f"({'a' if dataset == 'synthetic' else 'b'}) {dataset}", flush=True)
        rows = learned_classification(dataset, args.seeds, args.save_fixture, args.epochs)
        result[dataset] = rows
        print(classification_table(rows, with_ari=dataset == "synthetic"), "\n", flush=True)
    if args.checkpoints:
        rows = checkpoints(sorted(args.checkpoints))
        result["checkpoints"] = rows
        print("(c) checkpoints\n" + checkpoint_table(rows) + "\n", flush=True)
    if args.spreads:
        rows = lvis_simulation(args.spreads, args.sim_dim)
        result["lvis_simulation"] = rows
        print(f"(d) LVIS-scale simulation, C = 1203, D = {args.sim_dim}\n" + simulation_table(rows))
    result["wall_seconds"] = round(time.perf_counter() - start, 1)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1) + "\n")
        print(f"{args.out} ({result['wall_seconds']:.0f} s)")
    return result


if __name__ == "__main__":
    main()
