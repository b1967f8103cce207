"""Every Triton launcher writes its outputs and nothing past them.

Each output is a view at the start of a larger buffer whose tail is poisoned with a sentinel;
after the planned launches run, the tail must still hold it. A masked-off lane that stores
anyway shows up here as an overwritten sentinel (under triton 3.2's interpreter a 1-wide block
ignored its mask: a 1-dimensional virtual feature row wrote three floats past the output and
corrupted the heap; ``kernels/_launch.py`` ``lanes``). Small sizes are the point: they make the
narrowest blocks, where most lanes are masked off.
"""

from __future__ import annotations

import pytest
import torch

from fasa_fast.ops import _library, make_rng_state
from tests.backends import need

GUARD = 64  # sentinel elements after each output
SENTINEL = 12345.0


def guarded(shape: tuple[int, ...], dtype: torch.dtype, device: str) -> tuple[torch.Tensor, ...]:
    """A zero tensor of ``shape`` that is the head of a buffer, and the buffer's sentinel tail."""
    n = 1
    for s in shape:
        n *= s
    buf = torch.full((n + GUARD,), SENTINEL, dtype=torch.float64, device=device).to(dtype)
    head = buf[:n].view(shape)
    head.zero_()
    return head, buf[n:]


def assert_untouched(tail: torch.Tensor, what: str) -> None:
    expected = torch.full_like(tail, SENTINEL)
    bad = (tail != expected).nonzero().flatten().tolist()
    assert not bad, f"{what}: written past its end at guard offsets {bad[:8]}"


@pytest.fixture(params=["cpu", pytest.param("cuda", marks=pytest.mark.cuda)])
def device(request):
    if "triton" not in _library.available_backends(request.param):
        need("triton")  # in the pinned .venv a missing triton fails here
        pytest.skip(f"triton backend not available on {request.param}")
    return request.param


@pytest.mark.parametrize("dim", [1, 2, 3, 5])
@pytest.mark.parametrize("capacity", [1, 3, 4])
def test_sample_launches_stay_in_bounds(device, dim, capacity):
    from fasa_fast.kernels._launch import run
    from fasa_fast.kernels.sample_virtual_features import sample_virtual_features_launches

    c = 3
    mean = torch.randn(c, dim, device=device)
    std = torch.rand(c, dim, device=device)
    seen = torch.ones(c, dtype=torch.long, device=device)
    prob = torch.ones(c, device=device)
    rng = make_rng_state(7, device)
    features, f_tail = guarded((capacity, dim), torch.float32, device)
    labels, l_tail = guarded((capacity,), torch.long, device)
    counts, c_tail = guarded((2,), torch.long, device)
    run(
        sample_virtual_features_launches(
            mean, std, seen, prob, rng, 2, capacity, features=features, labels=labels, counts=counts
        ),
        torch.device(device),
    )
    assert_untouched(f_tail, "features")
    assert_untouched(l_tail, "labels")
    assert_untouched(c_tail, "counts")
    # and the heads were written: every slot is filled (3 classes x 2 replicas >= capacity)
    assert counts.tolist() == [capacity, 6]
    assert (labels >= 0).all() and torch.isfinite(features).all()


@pytest.mark.parametrize("dim", [1, 2, 3, 5])
def test_stats_launches_stay_in_bounds(device, dim):
    from fasa_fast.kernels._launch import run
    from fasa_fast.kernels.segmented_stats_update import segmented_stats_update_launches

    c = 3
    features = torch.randn(5, dim, device=device)
    labels = torch.tensor([0, 2, 2, 0, 1], device=device)
    mean, m_tail = guarded((c, dim), torch.float32, device)
    std, s_tail = guarded((c, dim), torch.float32, device)
    seen, n_tail = guarded((c,), torch.long, device)
    nonfinite, b_tail = guarded((1,), torch.long, device)
    features[3, dim - 1] = float("nan")  # class 0 keeps row 0
    run(
        segmented_stats_update_launches(features, labels, mean, std, seen, 0.9, False, nonfinite),
        torch.device(device),
    )
    assert_untouched(m_tail, "mean")
    assert_untouched(s_tail, "std")
    assert_untouched(n_tail, "seen")
    assert_untouched(b_tail, "nonfinite")
    assert seen.tolist() == [1, 1, 1] and nonfinite.tolist() == [1]
    torch.testing.assert_close(mean[1], features[4])  # a first sighting takes the batch mean


@pytest.mark.parametrize("c", [1, 2, 17])
@pytest.mark.parametrize("dim", [1, 3])
def test_fisher_launches_stay_in_bounds(device, c, dim):
    from fasa_fast.kernels._launch import run
    from fasa_fast.kernels.fisher_distance import fisher_distance_launches

    mean = torch.randn(c, dim, device=device)
    std = torch.rand(c, dim, device=device) + 0.5
    out, tail = guarded((c, c), torch.float32, device)
    out.fill_(float("nan"))
    run(fisher_distance_launches(mean, std, 1e-6, out), torch.device(device))
    assert_untouched(tail, "distance matrix")
    assert torch.isfinite(out).all(), "an element of the matrix was never written"
