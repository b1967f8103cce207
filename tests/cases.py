"""Case tables and input builders shared by the op tests, the emulated CUDA kernels and the
benchmarks: the small layouts each op is checked on, their tolerances, and (below) the shapes
that only large inputs reach.

The CUDA kernels split their work at fixed sizes (csrc/cuda/launch_geometry.h, *_device.cuh):
segmented_stats_update_ compacts rows in chunks of 1024 and gives each thread one feature of a
256-wide D tile;
sample_virtual_features selects classes in chunks of 1024 and fills a row with 256 threads of 4
features each (1024 features per pass); fisher_distance works on 32 x 32 tiles of class pairs
and stages D in chunks of 32. The small tables of the op tests never leave the first chunk or
tile; these do.
"""

from __future__ import annotations

from pathlib import Path

import torch

# Statistics a real run learned (the classification example, written by
# `python -m benchmarks.grouping_measurement`): the grouping tests run the rules on them.
LEARNED_STATISTICS = Path(__file__).parent / "data" / "learned_statistics_synthetic.pt"

STATS_TOL = {"atol": 2e-5, "rtol": 2e-5}


def fresh_state(num_classes, dim, device, initialised=False):
    if initialised:  # a state already carried over from earlier steps
        mean = torch.randn(num_classes, dim, device=device)
        std = torch.rand(num_classes, dim, device=device) + 0.1
        seen = torch.randint(0, 3, (num_classes,), device=device)
    else:
        mean = torch.zeros(num_classes, dim, device=device)
        std = torch.zeros(num_classes, dim, device=device)
        seen = torch.zeros(num_classes, dtype=torch.long, device=device)
    return mean, std, seen


# (case id, N, C, D, label generator)
STATS_LAYOUTS = [
    ("mixed-with-background-and-ignore", 64, 7, 33, lambda n, c: torch.randint(-2, c + 2, (n,))),
    ("empty-batch", 0, 5, 8, lambda n, c: torch.zeros(0, dtype=torch.long)),
    ("all-background", 16, 5, 8, lambda n, c: torch.full((n,), c)),
    ("all-ignored", 16, 5, 8, lambda n, c: torch.full((n,), -1)),
    ("one-class", 20, 1, 17, lambda n, c: torch.zeros(n, dtype=torch.long)),
    ("every-row-distinct", 9, 9, 16, lambda n, c: torch.randperm(n)),
    ("one-row-classes", 6, 12, 5, lambda n, c: torch.tensor([0, 3, 3, 5, 11, 12])),
    ("odd-dim-many-rows", 300, 4, 129, lambda n, c: torch.randint(0, c, (n,))),
]

SAMPLE_FEATURE_TOL = {"atol": 1e-5, "rtol": 1e-5}


def sample_stats(num_classes, dim, device, seen_fraction=0.7):
    mean = torch.randn(num_classes, dim, device=device) * 3
    std = torch.rand(num_classes, dim, device=device) + 0.1
    seen = (torch.rand(num_classes, device=device) < seen_fraction).long() * 2
    return mean, std, seen


# (case id, C, D, k, capacity, prob generator)
SAMPLE_LAYOUTS = [
    ("typical", 40, 10, 1, 16, lambda c: torch.rand(c) * 0.5),
    ("k-replicas-odd-dim", 30, 7, 3, 24, lambda c: torch.rand(c) * 0.4),
    ("overflow", 30, 5, 2, 6, lambda c: torch.ones(c)),
    ("capacity-not-multiple-of-k", 12, 4, 3, 7, lambda c: torch.ones(c)),
    ("nothing-selected", 20, 6, 1, 8, lambda c: torch.zeros(c)),
    ("capacity-zero", 10, 4, 1, 0, lambda c: torch.ones(c)),
    ("one-class", 1, 9, 2, 4, lambda c: torch.ones(c)),
    ("prob-outside-unit-interval", 16, 4, 1, 32, lambda c: torch.linspace(-0.5, 1.5, c)),
]

FISHER_TOL = {"atol": 1e-5, "rtol": 1e-4}

FISHER_SHAPES = [
    ("one-class", 1, 8),
    ("two-classes", 2, 3),
    ("odd-sizes", 37, 45),
    ("tile-edges", 33, 64),
    ("dim-one", 5, 1),
]


def lvis_batch(shape, instance_counts: torch.Tensor, device: str, seed: int = 0):
    """One step's RoI features and labels, as the benchmarks feed the ops: ``shape.rois`` rows,
    ``shape.positives`` of them labelled in proportion to ``instance_counts`` (``shape.num_classes``
    classes), the rest background (label C); ``shape.dim`` ReLU features."""
    gen = torch.Generator().manual_seed(seed)
    labels = torch.full((shape.rois,), shape.num_classes, dtype=torch.long)
    labels[: shape.positives] = torch.multinomial(
        instance_counts, shape.positives, replacement=True, generator=gen
    )
    labels = labels[torch.randperm(shape.rois, generator=gen)]
    features = torch.randn(shape.rois, shape.dim, generator=gen).relu()
    return features.to(device), labels.to(device)


def stats_args(device, n=24, c=5, d=12):
    """Positional arguments of one ``segmented_stats_update_`` call (opcheck, bad inputs)."""
    return (
        torch.randn(n, d, device=device),
        torch.randint(-1, c + 1, (n,), device=device),
        torch.randn(c, d, device=device),
        torch.rand(c, d, device=device),
        torch.randint(0, 2, (c,), device=device),
        0.1,
        False,
    )


def _only_in_last_chunk(n, c):
    # class c - 1 only in rows 2048.. (the third chunk), the other classes only before it
    labels = torch.randint(-1, c - 1, (n,))
    labels[2048:] = c - 1
    return labels


# (case id, N, C, D, label generator)
STATS_LARGE_LAYOUTS = [
    ("rows-in-three-chunks", 2500, 5, 40, lambda n, c: torch.randint(-1, c + 1, (n,))),
    ("rows-exactly-one-chunk", 1024, 3, 24, lambda n, c: torch.randint(0, c, (n,))),
    ("dim-in-three-tiles", 300, 4, 600, lambda n, c: torch.randint(-1, c + 1, (n,))),
    ("rows-and-dim-over", 2100, 3, 300, lambda n, c: torch.randint(0, c + 1, (n,))),
    ("class-only-in-last-chunk", 2100, 3, 20, _only_in_last_chunk),
]

# (case id, C, D, k, capacity, prob generator)
SAMPLE_LARGE_LAYOUTS = [
    ("classes-in-three-chunks", 2500, 6, 1, 64, lambda c: torch.rand(c) * 0.04),
    ("overflow-across-chunks", 2100, 4, 2, 30, lambda c: torch.full((c,), 0.05)),
    ("dim-over-one-pass", 6, 1100, 2, 8, lambda c: torch.ones(c)),
    ("odd-dim-over-one-pass", 3, 1030, 1, 4, lambda c: torch.ones(c)),
]

# (case id, C, D)
FISHER_LARGE_SHAPES = [
    ("three-tiles-two-dim-chunks", 70, 40),
    ("five-tiles", 130, 33),
    ("dim-chunks-exact", 65, 64),
]
