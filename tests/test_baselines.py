"""The benchmark baselines compute what the ops compute (checked against the float64 oracle),
so the speed-ups in docs/performance.md compare like with like."""

from __future__ import annotations

import pytest
import torch

from benchmarks.baselines import (
    fisher_distance_chunked,
    stats_update_per_class_loop,
    stats_update_vectorised,
)
from tests.oracle import fisher_oracle, stats_update_oracle


@pytest.mark.parametrize("baseline", [stats_update_per_class_loop, stats_update_vectorised])
def test_stats_update_baselines_match_oracle(baseline):
    num_classes, dim = 6, 9
    mean, std = torch.zeros(num_classes, dim), torch.zeros(num_classes, dim)
    seen = torch.zeros(num_classes, dtype=torch.long)
    for step in range(3):  # first sightings, then momentum steps; one-row classes included
        features = torch.randn(25, dim) * 2 + step
        labels = torch.randint(-1, num_classes + 1, (25,))
        expected = stats_update_oracle(features, labels, mean, std, seen, 0.1, False)
        baseline(features, labels, mean, std, seen, 0.1)
        torch.testing.assert_close(mean.double(), expected[0], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(std.double(), expected[1], atol=1e-4, rtol=1e-4)
        assert torch.equal(seen, expected[2])


def test_fisher_baseline_matches_oracle():
    mean = torch.randn(17, 11)
    std = torch.rand(17, 11) + 0.1
    torch.testing.assert_close(
        fisher_distance_chunked(mean, std, 1e-6, chunk=5).double(),
        fisher_oracle(mean, std, 1e-6),
        atol=1e-5,
        rtol=1e-4,
    )
