"""What one FASA adaptation pass can move at LVIS v1 scale, and what the pass costs.

An adaptation pass (``FASA.adapt()``, docs/method.md §3.3) changes the sampling probability of a
class only when the class's group holds a class with adaptation data (a ground-truth box in the
images the pass reads). This simulation measures, for several designs of the adaptation set,
the share of rare / common / frequent classes and of the Eq. 4 probability mass (``s = 1``, from
the real instance counts, ``fasa_fast.engine.initial_probabilities``) whose probability can
change in a pass, the images a pass reads (forward only) as a share of an LVIS epoch, and the
price of holding images out of training.

Model (approximations, stated in docs/reports/adaptation_coverage.md):

- **Images.** ``NUM_TRAIN_IMAGES`` LVIS v1 training images; class c appears in exactly
  ``image_count[c]`` of them (the real per-class image counts, ``benchmarks/data``), a uniformly
  random set drawn independently per class. So an image contains c with probability
  ``image_count[c] / NUM_TRAIN_IMAGES``, independently of the other classes (real co-occurrence
  is ignored).
- **Seen classes.** A class is seen (has running statistics, so it is grouped and sampled) once
  it has a training image left after the held-out split: one epoch of warm-up shows it.
- **Groups** are the engine's: ``fasa_fast.grouping.group_classes`` (DBSCAN on the Fisher
  distance, default parameters) over the seen classes' statistics, simulated as in
  ``benchmarks/grouping_study.py`` (40 super-categories, running statistics estimated from
  ``min(instance_count, 200)`` samples, so rare classes are noisier and more often outliers).
- **Passes.** The held-out split is fixed and the adaptation loader does not shuffle, so every
  pass reads the same images: a class with data now had data at the previous pass, which the
  engine requires. The first adaptation only records; these numbers hold from the second on.

Run: ``.venv/bin/python -m benchmarks.adaptation_coverage [--repeats 5] [--dim 1024] [--spread 0.3]``
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from benchmarks.grouping_study import DATA, simulated_statistics
from fasa_fast.engine import initial_probabilities
from fasa_fast.grouping import group_classes
from fasa_fast.ops import fisher_distance

# Images in lvis_v1_train.json (the category file holds per-class counts only).
NUM_TRAIN_IMAGES = 100_170
FREQUENCIES = ("r", "c", "f")


@dataclass
class World:
    """One simulated training set with its class statistics.

    ``class_images[c]``: sorted ids (in ``[0, num_images)``) of the images containing class c;
    ``frequency[c]``: LVIS's ``"r"`` / ``"c"`` / ``"f"``; ``prob``: Eq. 4 initial probabilities;
    ``group(seen)``: group id per class given the seen mask (-1 for never-seen), as the engine
    groups; ``distance``: ``[C, C]`` Fisher distance between the classes' statistics.
    """

    num_images: int
    frequency: np.ndarray
    prob: np.ndarray
    class_images: list[np.ndarray]
    group: Callable[[np.ndarray], np.ndarray]
    distance: np.ndarray


@dataclass
class Plan:
    """An adaptation design applied to a world: held-out images (never trained on), the images
    one pass reads, and whether classes of a group without data join the nearest group with
    data (by Fisher distance) instead of staying put."""

    held_out: np.ndarray
    pass_images: np.ndarray
    join_nearest: bool = False


Strategy = Callable[[World, np.random.Generator], Plan]


def load_lvis_categories() -> list[dict]:
    """LVIS v1 train category statistics (id, frequency, image and instance counts), by id."""
    return sorted(json.loads(DATA.read_text()), key=lambda c: c["id"])


def sample_class_images(
    image_counts: np.ndarray, num_images: int, rng: np.random.Generator
) -> list[np.ndarray]:
    """For each class, ``image_counts[c]`` distinct images drawn uniformly, independently."""
    return [np.sort(rng.choice(num_images, size=int(n), replace=False)) for n in image_counts]


def image_to_classes(class_images: list[np.ndarray], num_images: int):
    """CSR inverse of ``class_images``: classes of image i are ``indices[indptr[i]:indptr[i+1]]``."""
    owners = np.concatenate([np.full(len(imgs), c) for c, imgs in enumerate(class_images)])
    images = np.concatenate(class_images)
    order = np.argsort(images, kind="stable")
    indptr = np.zeros(num_images + 1, dtype=np.int64)
    np.cumsum(np.bincount(images, minlength=num_images), out=indptr[1:])
    return indptr, owners[order]


def presence(class_images: list[np.ndarray], images: np.ndarray, num_images: int) -> np.ndarray:
    """How many of ``images`` (distinct ids) contain each class: ``[C]`` int64."""
    chosen = np.zeros(num_images, dtype=np.int64)
    chosen[images] = 1
    owner = np.repeat(np.arange(len(class_images)), [len(imgs) for imgs in class_images])
    return np.bincount(
        owner, weights=chosen[np.concatenate(class_images)], minlength=len(class_images)
    ).astype(np.int64)


def random_split(
    num_images: int, fraction: float, max_images: int | None, rng: np.random.Generator
) -> np.ndarray:
    """``FASAHeldOutSplit``'s adapt side: ``min(round(fraction * N), max_images)`` random images."""
    held = round(fraction * num_images)
    if max_images is not None:
        held = min(held, max_images)
    return np.sort(rng.permutation(num_images)[:held])


def coverage_split(
    class_images: list[np.ndarray], num_images: int, budget: int, min_images: int = 2
) -> np.ndarray:
    """Greedy class-coverage held-out split.

    Classes with at least ``min_images`` images are visited rarest first; a class with no
    held-out image yet gets one of its images, the one that also covers the most still-uncovered
    classes, among the images whose removal leaves every class in it at least one training
    image. Stops at ``budget`` images. Returns the sorted held-out image ids.
    """
    indptr, indices = image_to_classes(class_images, num_images)
    counts = np.array([len(imgs) for imgs in class_images])
    train_left = counts.copy()
    covered = np.zeros(len(class_images), dtype=bool)
    held: list[int] = []
    for c in np.argsort(counts, kind="stable"):
        if len(held) >= budget:
            break
        if counts[c] < min_images or covered[c]:
            continue
        candidates = class_images[c]
        sizes = indptr[candidates + 1] - indptr[candidates]
        owner = np.repeat(np.arange(len(candidates)), sizes)
        members = np.concatenate([indices[indptr[i] : indptr[i + 1]] for i in candidates])
        gain = np.bincount(owner, weights=~covered[members], minlength=len(candidates))
        blocked = np.bincount(owner, weights=train_left[members] < 2, minlength=len(candidates))
        gain[blocked > 0] = -1
        best = int(np.argmax(gain))  # first maximum: the lowest image id among ties
        if gain[best] < 0:
            continue  # every image of c would take some class's last training image
        image = int(candidates[best])
        classes = indices[indptr[image] : indptr[image + 1]]
        covered[classes] = True
        train_left[classes] -= 1
        held.append(image)
    return np.sort(np.array(held, dtype=np.int64))


def pass_images(split: np.ndarray, ranks: int, max_images_per_rank: int | None) -> np.ndarray:
    """Images one adaptation pass reads: mmengine's ``DefaultSampler`` (no shuffle) hands rank r
    the split's images ``r, r + ranks, ...`` and ``FASAHook`` stops each rank at ``max_images``."""
    per_rank = [split[r::ranks][:max_images_per_rank] for r in range(ranks)]
    return np.sort(np.concatenate(per_rank))


def _groups_with_data(groups: np.ndarray, has_data: np.ndarray) -> np.ndarray:
    """``[G]`` bool: whether group g holds a seen class with adaptation data."""
    out = np.zeros(int(groups.max(initial=-1)) + 1, dtype=bool)
    out[groups[(groups >= 0) & has_data]] = True
    return out


def movable_classes(groups: np.ndarray, has_data: np.ndarray) -> np.ndarray:
    """Classes whose probability an adaptation pass can change: the engine steps a group when
    one of its classes has data (its loss this pass and the previous one); never-seen classes
    (group -1) hold."""
    return (groups >= 0) & _groups_with_data(groups, has_data)[np.maximum(groups, 0)]


def join_nearest_group(
    groups: np.ndarray, has_data: np.ndarray, distance: np.ndarray
) -> np.ndarray:
    """Design (c): each seen class of a group without data joins the group of its nearest
    (smallest ``distance``) seen class that is in a group with data. Never-seen classes stay -1."""
    steerable = movable_classes(groups, has_data)
    anchors = np.flatnonzero(steerable)
    if anchors.size == 0:
        return groups
    stranded = np.flatnonzero((groups >= 0) & ~steerable)
    nearest = anchors[np.argmin(distance[np.ix_(stranded, anchors)], axis=1)]
    out = groups.copy()
    out[stranded] = groups[nearest]
    return out


def evaluate(world: World, plan: Plan) -> dict[str, float]:
    """Shares of classes (per LVIS frequency group) and of probability mass that can move."""
    counts = np.array([len(imgs) for imgs in world.class_images])
    held_per_class = presence(world.class_images, plan.held_out, world.num_images)
    seen = counts - held_per_class > 0
    has_data = presence(world.class_images, plan.pass_images, world.num_images) > 0
    groups = world.group(seen)
    if plan.join_nearest:
        groups = join_nearest_group(groups, has_data, world.distance)
    movable = movable_classes(groups, has_data)
    row: dict[str, float] = {}
    for f in FREQUENCIES:
        members = world.frequency == f
        row[f"data_{f}"] = float(has_data[members & seen].sum() / members.sum())
        row[f"move_{f}"] = float(movable[members].mean())
    row["mass"] = float(world.prob[movable].sum() / world.prob.sum())
    row["held_out"] = float(len(plan.held_out))
    row["pass"] = float(len(plan.pass_images))
    row["pass_share"] = float(len(plan.pass_images) / world.num_images)
    rare = world.frequency == "r"
    row["rare_losing"] = float((held_per_class[rare] > 0).sum())
    row["rare_lost_share"] = float((held_per_class[rare] / counts[rare]).mean())
    two = counts == 2
    row["two_losing"] = float((held_per_class[two] > 0).mean()) if two.any() else float("nan")
    row["no_training"] = float((~seen).sum())
    return row


def previous_defaults(ranks: int = 8, max_images_per_rank: int = 500) -> Strategy:
    """(a) the defaults before this study: ``FASAHeldOutSplit`` held out a random 5% (at most
    1000 images), ``FASAHook`` read at most 500 images per rank; classes of groups without data
    stay put, DBSCAN outliers are singletons."""

    def plan(world: World, rng: np.random.Generator) -> Plan:
        split = random_split(world.num_images, 0.05, 1000, rng)
        return Plan(split, pass_images(split, ranks, max_images_per_rank))

    return plan


def class_coverage(budget_share: float = 0.01, join_nearest: bool = False) -> Strategy:
    """(b) ``coverage_split`` within ``budget_share`` of the epoch's images, read whole by the
    pass; (c) with ``join_nearest=True``: classes of groups without data join the nearest group
    with data."""

    def plan(world: World, rng: np.random.Generator) -> Plan:
        budget = int(budget_share * world.num_images)
        split = coverage_split(world.class_images, world.num_images, budget)
        return Plan(split, split, join_nearest)

    return plan


def project_split(budget_share: float = 0.01) -> Strategy:
    """The split ``FASAHeldOutSplit`` makes by default (``fasa_fast.splits.held_out_indices``,
    ``"coverage"``: (b)'s greedy, then the budget ``ceil(budget_share * N)`` filled with random
    images), read whole by the pass, with the engine's ``attach_dataless`` (= (c)'s rule)."""

    def plan(world: World, rng: np.random.Generator) -> Plan:
        from fasa_fast.splits import held_out_indices

        indptr, indices = image_to_classes(world.class_images, world.num_images)
        image_classes = [
            indices[indptr[i] : indptr[i + 1]].tolist() for i in range(world.num_images)
        ]
        budget = math.ceil(budget_share * world.num_images)
        seed = int(rng.integers(2**31))
        split = np.array(held_out_indices(image_classes, budget, seed=seed), dtype=np.int64)
        return Plan(split, split, join_nearest=True)

    return plan


STRATEGIES: dict[str, Strategy] = {
    "(a) random 5% split <= 1000, 500 / rank, 8 ranks": previous_defaults(8),
    "(a) the same, 1 rank": previous_defaults(1),
    "(b) coverage split <= 1%": class_coverage(0.01),
    "(c) (b) + join the nearest group with data": class_coverage(0.01, join_nearest=True),
    "(d) fasa_fast.splits coverage + fill to 1%, attach_dataless": project_split(0.01),
}


def lvis_world(seed: int, dim: int = 1024, spread: float = 0.3) -> World:
    """A simulated LVIS v1 training set at full scale (see the module docstring)."""
    categories = load_lvis_categories()
    rng = np.random.default_rng(seed)
    image_counts = np.array([c["image_count"] for c in categories])
    instance_counts = torch.tensor([c["instance_count"] for c in categories])
    mean, std, _, _ = simulated_statistics(dim, 40, spread, 200, seed)
    cache: dict[bytes, np.ndarray] = {}

    def group(seen: np.ndarray) -> np.ndarray:
        key = seen.tobytes()
        if key not in cache:
            cache[key] = group_classes(mean, std, torch.from_numpy(seen).long()).numpy()
        return cache[key]

    return World(
        num_images=NUM_TRAIN_IMAGES,
        frequency=np.array([c["frequency"] for c in categories]),
        prob=initial_probabilities(instance_counts).double().numpy(),
        class_images=sample_class_images(image_counts, NUM_TRAIN_IMAGES, rng),
        group=group,
        distance=fisher_distance(mean, std).double().numpy(),
    )


def run(
    strategies: dict[str, Strategy], repeats: int, seed: int = 0, **world_kwargs
) -> dict[str, list[dict[str, float]]]:
    """Every strategy on ``repeats`` worlds (seeds ``seed, seed + 1, ...``)."""
    results: dict[str, list[dict[str, float]]] = {name: [] for name in strategies}
    for r in range(repeats):
        world = lvis_world(seed + r, **world_kwargs)
        for name, strategy in strategies.items():
            # the same generator state for every strategy: variants of one design (e.g. rank
            # counts) see the same random split
            rng = np.random.default_rng([seed + r, 1])
            results[name].append(evaluate(world, strategy(world, rng)))
    return results


def _cell(rows: list[dict[str, float]], key: str, percent: bool = True, digits: int = 1) -> str:
    values = np.array([row[key] for row in rows]) * (100 if percent else 1)
    suffix = "%" if percent else ""
    return f"{values.mean():.{digits}f} ± {values.std():.{digits}f}{suffix}"


def format_tables(results: dict[str, list[dict[str, float]]]) -> str:
    lines = [
        "| strategy | rare movable | common movable | frequent movable | Eq. 4 mass movable "
        "| rare / common / frequent with own data | pass images | pass / epoch |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, rows in results.items():
        own = " / ".join(_cell(rows, f"data_{f}", digits=0) for f in FREQUENCIES)
        lines.append(
            f"| {name} | {_cell(rows, 'move_r')} | {_cell(rows, 'move_c')} | "
            f"{_cell(rows, 'move_f')} | {_cell(rows, 'mass')} | {own} | "
            f"{_cell(rows, 'pass', percent=False, digits=0)} | {_cell(rows, 'pass_share', digits=2)} |"
        )
    lines += [
        "",
        "| strategy | held-out images | rare classes losing training images | mean share of a "
        "rare class's images held out | 2-image classes losing one | classes left with no "
        "training image |",
        "|---|---|---|---|---|---|",
    ]
    for name, rows in results.items():
        lines.append(
            f"| {name} | {_cell(rows, 'held_out', percent=False, digits=0)} | "
            f"{_cell(rows, 'rare_losing', percent=False)} | {_cell(rows, 'rare_lost_share')} | "
            f"{_cell(rows, 'two_losing', digits=0)} | {_cell(rows, 'no_training', percent=False)} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dim", type=int, default=1024)
    parser.add_argument(
        "--spread", type=float, default=0.3, help="class offset within a super-category"
    )
    args = parser.parse_args(argv)
    start = time.perf_counter()
    results = run(STRATEGIES, args.repeats, args.seed, dim=args.dim, spread=args.spread)
    print(
        f"LVIS v1 train: {NUM_TRAIN_IMAGES} images, 1203 classes; {args.repeats} repeats "
        f"(seeds {args.seed}..{args.seed + args.repeats - 1}), D={args.dim}, spread={args.spread}; "
        f"mean ± std over repeats"
    )
    print(format_tables(results))
    print(f"\n({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
