"""Detection evidence: Mask R-CNN baseline vs the same model with FASA, several seeds, paired.

Both methods train ``configs/demo/mask-rcnn_r18_fpn_toy-lvis_fasa.py`` (ResNet-18 FPN Mask
R-CNN from scratch, CPU) on the harder generated long-tailed set
(``fasa_fast.mmdet.toy_lvis.make_hard_toy_lvis``: 40 classes with LVIS v1's rare / common /
frequent shares, small partly overlapping objects on photograph backgrounds), generated once
with a fixed data seed, and are evaluated on its class-balanced validation split with mmdet's
LVISMetric (AP, APr, APc, APf for boxes and masks). Everything is equal but the method:

- **baseline**: mmdet's ``Shared2FCBBoxHead`` (the FASA head's arguments minus ``fasa``), no
  ``FASAHook``; it trains on the ``train`` side of the same ``FASAHeldOutSplit`` as FASA, so
  both see exactly the same training images (the baseline does not use the held-out ones);
- **fasa**: ``FASAShared2FCBBoxHead`` + ``FASAHook``, adaptation on the held-out side
  (``strategy="coverage"``, 10% of the training images, all of them read every pass), with the
  engine's default grouping;
- **fasa-<grouping>** (e.g. ``fasa-single``, ``fasa-dbscan``, ``fasa-per-class``): the same with
  that grouping rule of ``fasa_fast.grouping`` (``--methods``).

Seed ``s`` sets ``randomness=dict(seed=s)`` for both runs of the pair (weight init, sampling,
augmentation); the data set and the held-out split do not change with it. Each run is a
separate process (``--run-one``), one thread; runs go seed by seed, every method of a seed
before the next seed (``--jobs`` of them at a time), so that a change of machine load hits all
methods alike. A FASA run also keeps its checkpoint of every epoch (``--keep-checkpoints``, for
``benchmarks/grouping_measurement.py``) and records the mean sampling probability per frequency
group and the grouping of every adaptation. The JSON holds every run's numbers, mean ± sample
std per method, and the paired differences (each method − baseline per seed, and fasa − each
other FASA variant, then mean ± sample std over seeds); a markdown table is printed. Results:
docs/reports/detection_evidence.md.

Run: ``.venv/bin/python -m benchmarks.detection_evidence --seeds 0 1 2 --epochs 12
--out benchmarks/results/detection-evidence-DATE.json`` (``--tiny``: a 1-2 minute smoke run)
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
METHODS = ("baseline", "fasa")  # the default --methods


def method_grouping(method: str) -> str | None:
    """The grouping of a FASA method name (``fasa``: the engine's default), None for baseline."""
    from fasa_fast.grouping import DEFAULT_GROUPING, GROUPING_METHODS

    if method == "baseline":
        return None
    if method == "fasa":
        return DEFAULT_GROUPING
    grouping = method.removeprefix("fasa-")
    if not method.startswith("fasa-") or grouping not in GROUPING_METHODS:
        raise ValueError(
            f"method: expected 'baseline', 'fasa' or 'fasa-<grouping>' with a grouping of "
            f"{GROUPING_METHODS}, got {method!r}"
        )
    return grouping


KINDS = ("bbox", "segm")
METRICS = ("AP", "APr", "APc", "APf")
KEYS = [f"{kind}_{m}" for kind in KINDS for m in METRICS]
# The adaptation set: FASAHeldOutSplit's train / adapt sides (fixed, whatever the seed).
SPLIT = dict(fraction=0.1, max_images=None, strategy="coverage", seed=0)


def build_config(
    method: str,
    seed: int,
    data_root: Path,
    work_dir: Path,
    epochs: int,
    keep_checkpoints: bool = False,
):
    """The demo config made into ``method``'s run on ``data_root`` with ``randomness`` ``seed``;
    ``keep_checkpoints``: a FASA run saves a checkpoint after every epoch."""
    from fasa_fast.mmdet.demo import build_config as demo_config

    grouping = method_grouping(method)
    cfg = demo_config(data_root, work_dir, epochs)
    ann = json.loads((Path(data_root) / "annotations" / "lvis_v1_train.json").read_text())
    num_classes = len(ann["categories"])
    roi = cfg.model.roi_head
    roi.mask_head.num_classes = num_classes
    head = roi.bbox_head
    head.num_classes = num_classes
    cfg.train_dataloader.dataset.update(SPLIT)
    if method == "baseline":
        head.type = "Shared2FCBBoxHead"
        head.pop("fasa")
        cfg.custom_hooks = []
    else:
        hooks = [h for h in cfg.custom_hooks if h["type"] == "FASAHook"]
        assert len(hooks) == 1, cfg.custom_hooks
        hooks[0]["max_images"] = None  # the whole held-out side, every pass
        head.fasa.grouping = grouping
    cfg.randomness = dict(seed=seed)
    if keep_checkpoints and grouping is not None:
        cfg.default_hooks.checkpoint = dict(type="CheckpointHook", interval=1, max_keep_ckpts=-1)
    else:
        cfg.default_hooks.checkpoint = dict(type="CheckpointHook", interval=-1, save_last=False)
    return cfg


def _clean(value) -> float | None:
    """LVIS reports -1 (and mmengine sometimes nan) for a group without categories."""
    if value is None:
        return None
    value = float(value)
    return None if math.isnan(value) or value < 0 else value


def run_one(
    method: str,
    seed: int,
    data_root: Path,
    work_dir: Path,
    epochs: int,
    keep_checkpoints: bool = False,
) -> dict:
    """Train and evaluate one run in this process; returns and writes ``metrics.json``."""
    warnings.filterwarnings("ignore", message="pkg_resources is deprecated")
    import torch
    from mmengine.runner import Runner

    from fasa_fast.mmdet.checkpoint_loading import mmengine_checkpoint_loading

    torch.set_num_threads(1)
    start = time.perf_counter()
    cfg = build_config(method, seed, data_root, work_dir, epochs, keep_checkpoints)
    runner = Runner.from_cfg(cfg)
    with mmengine_checkpoint_loading():
        runner.train()
        train_seconds = time.perf_counter() - start
        metrics = runner.val_loop.run()
    result = {
        "method": method,
        "seed": seed,
        "metrics": {key: _clean(metrics.get(f"lvis/{key}")) for key in KEYS},
        "train_images": len(runner.train_dataloader.dataset),
        "train_seconds": round(train_seconds, 1),
        "total_seconds": round(time.perf_counter() - start, 1),
        # per epoch: mean probability per frequency group (the paper's Fig. 3), and each
        # adaptation's grouping summary (FASAHook)
        "fasa_history": runner.message_hub.get_info("fasa_history", []),
        "fasa_grouping_history": runner.message_hub.get_info("fasa_grouping_history", []),
    }
    (Path(work_dir) / "metrics.json").write_text(json.dumps(result, indent=1))
    return result


def mean_std(values: list[float | None]) -> dict:
    values = [v for v in values if v is not None]
    return {
        "mean": statistics.fmean(values) if values else None,
        "std": statistics.stdev(values) if len(values) > 1 else None,
        "n": len(values),
    }


def comparisons(methods: list[str]) -> list[tuple[str, str]]:
    """(method, reference) pairs: every FASA method against the baseline, and ``fasa`` (the
    default grouping) against every other FASA variant."""
    pairs = [(m, "baseline") for m in methods if m != "baseline" and "baseline" in methods]
    if "fasa" in methods:
        pairs += [("fasa", m) for m in methods if m not in ("baseline", "fasa")]
    return pairs


def summarise(runs: list[dict]) -> tuple[dict, dict]:
    """Per-method mean ± sample std, and paired differences (per seed, then over seeds) of the
    ``comparisons`` pairs, keyed ``"<method> − <reference>"``."""
    methods = list(dict.fromkeys(r["method"] for r in runs))
    summary = {
        method: {
            key: mean_std([r["metrics"][key] for r in runs if r["method"] == method])
            for key in KEYS
        }
        for method in methods
    }
    by = {(r["method"], r["seed"]): r["metrics"] for r in runs}
    paired = {}
    for method, reference in comparisons(methods):
        seeds = sorted({s for m, s in by if m == method and (reference, s) in by})
        diffs = {}
        for key in KEYS:
            per_seed = {}
            for s in seeds:
                a, b = by[(method, s)][key], by[(reference, s)][key]
                per_seed[str(s)] = None if a is None or b is None else a - b
            diffs[key] = dict(mean_std(list(per_seed.values())), per_seed=per_seed)
        paired[f"{method} − {reference}"] = diffs
    return summary, paired


def _fmt(stat: dict, signed: bool = False) -> str:
    if stat["mean"] is None:
        return "n/a"
    mean = f"{stat['mean']:+.3f}" if signed else f"{stat['mean']:.3f}"
    return mean if stat["std"] is None else f"{mean} ± {stat['std']:.3f}"


def markdown_table(summary: dict, paired: dict) -> str:
    head = ["", *(f"{kind} {m}" for kind in ("box", "mask") for m in METRICS)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for method, stats in summary.items():
        n = max(stat["n"] for stat in stats.values())
        cells = [_fmt(stats[key]) for key in KEYS]
        lines.append(f"| {method} (n={n}) | " + " | ".join(cells) + " |")
    for name, diffs in paired.items():
        cells = [_fmt(diffs[key], signed=True) for key in KEYS]
        lines.append(f"| {name} (paired) | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def probability_table(runs: list[dict]) -> str:
    """Mean sampling probability of the rare / common / frequent classes after each epoch, mean
    over the seeds of each FASA method (the paper's Fig. 3 as numbers)."""
    lines = ["| method | epoch | p rare | p common | p frequent | groups | largest group |"]
    lines.append("|---|---|---|---|---|---|---|")
    for method in dict.fromkeys(r["method"] for r in runs if r["method"] != "baseline"):
        mine = [r for r in runs if r["method"] == method]
        epochs = sorted({h["epoch"] for r in mine for h in r.get("fasa_history", [])})
        for epoch in epochs:
            cells = []
            for group in ("rare", "common", "frequent"):
                values = [
                    h[f"fasa/p_{group}"]
                    for r in mine
                    for h in r.get("fasa_history", [])
                    if h["epoch"] == epoch and f"fasa/p_{group}" in h
                ]
                cells.append(f"{statistics.fmean(values):.4f}" if values else "n/a")
            grouping = [
                g for r in mine for g in r.get("fasa_grouping_history", []) if g["epoch"] == epoch
            ]
            if grouping:
                cells.append("/".join(str(g["num_groups"]) for g in grouping))
                cells.append("/".join(f"{g['largest_group_share']:.0%}" for g in grouping))
            else:
                cells += ["-", "-"]
            lines.append(f"| {method} | {epoch} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _commit(given: str | None) -> str | None:
    if given:
        return given
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True
        )
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def _machine() -> dict:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "threads": 1,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
    }


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument(
        "--methods",
        nargs="+",
        default=list(METHODS),
        help="baseline, fasa (default grouping), fasa-<grouping> (default: %(default)s)",
    )
    parser.add_argument("--jobs", type=int, default=1, help="runs at a time (one thread each)")
    parser.add_argument(
        "--skip-done",
        action="store_true",
        help="take a run whose work dir already holds its metrics.json instead of training it "
        "again (e.g. after an interrupted comparison; same command, same tree)",
    )
    parser.add_argument(
        "--keep-checkpoints",
        action="store_true",
        help="FASA runs save a checkpoint every epoch (for benchmarks/grouping_measurement.py)",
    )
    parser.add_argument("--epochs", type=int, default=None, help="default 12 (tiny: 1)")
    parser.add_argument("--work-dir", default="work_dirs/detection_evidence")
    parser.add_argument("--data-root", default=None, help="default: <work-dir>/data")
    parser.add_argument("--out", default=None, help="JSON file (default <work-dir>/results.json)")
    parser.add_argument("--num-train", type=int, default=None, help="default 300 (tiny: 40)")
    parser.add_argument("--num-val", type=int, default=None, help="default 80 (tiny: 12)")
    parser.add_argument("--data-seed", type=int, default=0, help="the generator's seed")
    parser.add_argument("--tiny", action="store_true", help="few images, 1 epoch: a smoke test")
    parser.add_argument("--commit", default=None, help="default: git rev-parse HEAD")
    parser.add_argument(
        "--run-one", nargs=2, metavar=("METHOD", "SEED"), help=argparse.SUPPRESS
    )  # internal: one run in this process
    args = parser.parse_args(argv)
    try:
        for method in args.methods:
            method_grouping(method)
    except ValueError as err:
        parser.error(f"--methods: {err}")
    if len(set(args.methods)) != len(args.methods):
        parser.error(f"--methods: expected distinct names, got {args.methods}")
    if args.jobs < 1:
        parser.error(f"--jobs: expected >= 1, got {args.jobs}")
    tiny = dict(epochs=1, num_train=40, num_val=12)
    full = dict(epochs=12, num_train=300, num_val=80)
    for key, value in (tiny if args.tiny else full).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    work = Path(args.work_dir)
    data_root = Path(args.data_root) if args.data_root else work / "data"
    if args.run_one:
        method, seed = args.run_one[0], int(args.run_one[1])
        return run_one(method, seed, data_root, work, args.epochs, args.keep_checkpoints)

    from fasa_fast.mmdet.toy_lvis import HARD_VARIANT, make_hard_toy_lvis

    command = " ".join(shlex.quote(a) for a in [sys.executable, *sys.argv])
    if argv is not None:
        command = " ".join(["python -m benchmarks.detection_evidence", *map(shlex.quote, argv)])
    start = time.perf_counter()
    commit = _commit(args.commit)  # each run imports the code as it is when it starts
    work.mkdir(parents=True, exist_ok=True)
    data = dict(num_train=args.num_train, num_val=args.num_val, seed=args.data_seed)
    make_hard_toy_lvis(data_root, **data)
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    order = [(seed, method) for seed in args.seeds for method in args.methods]
    running: list[tuple[subprocess.Popen, Path, object]] = []
    runs = []

    def finish(proc, run_dir, log) -> None:
        code = proc.wait()
        log.close()
        if code != 0:
            raise subprocess.CalledProcessError(code, proc.args)
        run = json.loads((run_dir / "metrics.json").read_text())
        runs.append(run)
        print(
            f"    {run['method']} seed {run['seed']}, {run['total_seconds']:.0f} s: "
            + ", ".join(
                f"{k} {v:.3f}" if v is not None else f"{k} n/a" for k, v in run["metrics"].items()
            ),
            flush=True,
        )

    skipped = []
    for seed, method in order:
        run_dir = work / f"{method}_seed{seed}"
        if args.skip_done and (run_dir / "metrics.json").is_file():
            runs.append(json.loads((run_dir / "metrics.json").read_text()))
            skipped.append(f"{method} seed {seed}")
            print(f"    {method} seed {seed}: taken from {run_dir / 'metrics.json'}", flush=True)
            continue
        if len(running) >= args.jobs:
            finish(*running.pop(0))
        cmd = [sys.executable, "-m", "benchmarks.detection_evidence", "--run-one", method]
        cmd += [str(seed), "--epochs", str(args.epochs), "--work-dir", str(run_dir)]
        cmd += ["--data-root", str(data_root)]
        if args.keep_checkpoints:
            cmd.append("--keep-checkpoints")
        print(f"[{time.strftime('%H:%M:%S')}] {method} seed {seed} ...", flush=True)
        log = open(work / f"{method}_seed{seed}.log", "w")  # noqa: SIM115 (closed by finish)
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
        running.append((proc, run_dir, log))
    while running:
        finish(*running.pop(0))
    runs.sort(key=lambda r: (r["seed"], args.methods.index(r["method"])))
    summary, paired = summarise(runs)
    result = {
        "date": datetime.date.today().isoformat(),
        "machine": _machine(),
        "commit": commit,
        "commit_at_end": _commit(args.commit),
        "command": command,
        "setup": {
            "config": "configs/demo/mask-rcnn_r18_fpn_toy-lvis_fasa.py",
            "epochs": args.epochs,
            "seeds": args.seeds,
            "data": dict(HARD_VARIANT, **data, generator="make_hard_toy_lvis"),
            "held_out_split": SPLIT,
            "baseline": "Shared2FCBBoxHead, no FASAHook, the FASAHeldOutSplit train side",
            "fasa": "FASAShared2FCBBoxHead + FASAHook (max_images=None), same train side",
            "methods": args.methods,
            "jobs": args.jobs,
            "skipped_done_runs": skipped,
        },
        "runs": runs,
        "summary": summary,
        "paired_differences": paired,
        "wall_seconds": round(time.perf_counter() - start, 1),
    }
    out = Path(args.out) if args.out else work / "results.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print()
    print(markdown_table(summary, paired))
    print()
    print(probability_table(runs))
    print(f"\n{out} ({result['wall_seconds']:.0f} s)")
    return result


if __name__ == "__main__":
    main()
