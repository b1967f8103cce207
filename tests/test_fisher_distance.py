"""fisher_distance on every backend against the float64 oracle."""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fasa_fast.ops import _library, fisher_distance
from tests.backends import cpu_property_backends, cuda_backend_params, needs_opcheck
from tests.cases import FISHER_LARGE_SHAPES, FISHER_SHAPES, FISHER_TOL
from tests.oracle import fisher_oracle


@pytest.mark.parametrize("case", FISHER_SHAPES, ids=[s[0] for s in FISHER_SHAPES])
def test_matches_oracle(device_backend, case):
    _, c, d = case
    mean = torch.randn(c, d, device=device_backend) * 2
    std = torch.rand(c, d, device=device_backend) + 0.05
    out = fisher_distance(mean, std, eps=1e-6)
    assert out.shape == (c, c) and out.dtype == torch.float32
    torch.testing.assert_close(out.cpu().double(), fisher_oracle(mean, std, 1e-6), **FISHER_TOL)
    assert torch.equal(out, out.T)
    assert (out.diagonal() == 0).all()


def test_empty_and_subset(device_backend):
    mean = torch.randn(10, 6, device=device_backend)
    std = torch.rand(10, 6, device=device_backend) + 0.1
    assert fisher_distance(mean[:0], std[:0]).shape == (0, 0)
    for dtype in (torch.int64, torch.int32):
        # unsorted, with a repeat: the result follows the order given, row for row
        classes = torch.tensor([7, 2, 5, 2], dtype=dtype, device=device_backend)
        sub = fisher_distance(mean, std, classes=classes)
        picked = classes.long().cpu()
        expected = fisher_oracle(mean.cpu()[picked], std.cpu()[picked], 1e-6)
        assert sub.shape == (4, 4), (
            f"classes={classes.tolist()}: expected shape (4, 4), got {tuple(sub.shape)}"
        )
        torch.testing.assert_close(sub.cpu().double(), expected, **FISHER_TOL)


def test_zero_variance_uses_eps(device_backend):
    mean = torch.tensor([[0.0, 1.0], [2.0, 1.0]], device=device_backend)
    std = torch.zeros(2, 2, device=device_backend)
    out = fisher_distance(mean, std, eps=0.5)
    assert out[0, 1].item() == pytest.approx((4 / 0.5 + 0) / 2)


def test_non_contiguous_inputs(device_backend):
    mean = torch.randn(12, 20, device=device_backend).T  # [20, 12] non-contiguous
    std = (torch.rand(12, 20, device=device_backend) + 0.1).T
    torch.testing.assert_close(
        fisher_distance(mean, std).cpu().double(), fisher_oracle(mean, std, 1e-6), **FISHER_TOL
    )


@settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    c=st.integers(1, 20),
    d=st.integers(1, 40),
    scale=st.floats(1e-2, 1e2),
    seed=st.integers(0, 2**31 - 1),
    backend=st.sampled_from(cpu_property_backends()),
)
def test_property_random_shapes(c, d, scale, seed, backend):
    gen = torch.Generator().manual_seed(seed)
    mean = torch.randn(c, d, generator=gen) * scale
    std = torch.rand(c, d, generator=gen) * scale + 1e-3
    with _library.use_backend("cpu", backend):
        out = fisher_distance(mean, std)
    torch.testing.assert_close(out.double(), fisher_oracle(mean, std, 1e-6), **FISHER_TOL)


@pytest.mark.cuda
@pytest.mark.parametrize("device_backend", cuda_backend_params(), indirect=True)
@pytest.mark.parametrize("case", FISHER_LARGE_SHAPES, ids=[s[0] for s in FISHER_LARGE_SHAPES])
def test_large_shapes_on_the_gpu(device_backend, case):
    # several 32 x 32 tiles of class pairs and D chunks (tests/cases.py)
    _, c, d = case
    mean = torch.randn(c, d, device=device_backend) * 2
    std = torch.rand(c, d, device=device_backend) + 0.05
    out = fisher_distance(mean, std)
    torch.testing.assert_close(
        out.cpu().double(), fisher_oracle(mean.cpu(), std.cpu(), 1e-6), **FISHER_TOL
    )
    assert torch.equal(out, out.T) and (out.diagonal() == 0).all()


@needs_opcheck
def test_opcheck_fisher_distance(device_backend):
    mean = torch.randn(9, 7, device=device_backend)
    std = torch.rand(9, 7, device=device_backend) + 0.1
    torch.library.opcheck(torch.ops.fasa_fast.fisher_distance.default, (mean, std, 1e-6))


BAD_FISHER_CALLS = [
    ("mean-1d", dict(mean=torch.zeros(4)), ValueError, "mean: expected a 2-D"),
    ("std-shape", dict(std=torch.ones(3, 3)), ValueError, "std: expected shape"),
    ("mean-double", dict(mean=torch.zeros(4, 3, dtype=torch.float64)), TypeError, "mean: expected dtype float32"),
    ("eps-negative", dict(eps=-1.0), ValueError, "eps: expected >= 0"),
    ("classes-float", dict(classes=torch.tensor([0.0, 1.0])), TypeError, "classes: expected dtype int64, int32, got float32"),
    ("zero-dim", dict(mean=torch.zeros(4, 0), std=torch.zeros(4, 0)), ValueError, "mean: expected D >= 1"),
]  # fmt: skip


@pytest.mark.parametrize("case", BAD_FISHER_CALLS, ids=[c[0] for c in BAD_FISHER_CALLS])
def test_bad_fisher_input_names_the_argument(case):
    _, override, exc, match = case
    kwargs = {"mean": torch.zeros(4, 3), "std": torch.ones(4, 3), **override}
    with pytest.raises(exc, match=match):
        fisher_distance(**kwargs)
