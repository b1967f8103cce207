"""Case tables shared by the op tests: shapes that only large inputs reach.

The CUDA kernels split their work at fixed sizes (csrc/cuda/*.cuh): segmented_stats_update_
compacts rows in chunks of 1024 and gives each thread one feature of a 256-wide D tile;
sample_virtual_features selects classes in chunks of 1024 and fills a row with 256 threads of 4
features each (1024 features per pass); fisher_distance works on 32 x 32 tiles of class pairs
and stages D in chunks of 32. The small tables of the op tests never leave the first chunk or
tile; these do.
"""

from __future__ import annotations

import torch


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
