"""segmented_stats_update_ on every backend against the float64 oracle."""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fasa_fast
from fasa_fast.ops import _library, segmented_stats_update_
from tests.backends import cpu_property_backends, cuda_backend_params, needs_opcheck
from tests.cases import STATS_LARGE_LAYOUTS, STATS_LAYOUTS, STATS_TOL, fresh_state, stats_args
from tests.oracle import nonfinite_rows_oracle, stats_update_oracle


def check_against_oracle(features, labels, state, momentum=0.1, momentum_on_var=False):
    mean, std, seen = state
    expected = stats_update_oracle(features, labels, mean, std, seen, momentum, momentum_on_var)
    segmented_stats_update_(features, labels, mean, std, seen, momentum, momentum_on_var)
    torch.testing.assert_close(mean.cpu().double(), expected[0], **STATS_TOL)
    torch.testing.assert_close(std.cpu().double(), expected[1], **STATS_TOL)
    assert torch.equal(seen.cpu(), expected[2])


@pytest.mark.parametrize("momentum_on_var", [False, True], ids=["std", "var"])
@pytest.mark.parametrize("initialised", [False, True], ids=["fresh", "carried"])
@pytest.mark.parametrize("case", STATS_LAYOUTS, ids=[case[0] for case in STATS_LAYOUTS])
def test_layouts(device_backend, case, initialised, momentum_on_var):
    _, n, c, d, make_labels = case
    features = torch.randn(n, d, device=device_backend) * 3 + 1
    labels = make_labels(n, c).to(device_backend)
    state = fresh_state(c, d, device_backend, initialised)
    check_against_oracle(features, labels, state, 0.1, momentum_on_var)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_feature_dtypes(device_backend, dtype):
    features = (torch.randn(48, 24) * 2).to(dtype).to(device_backend)
    labels = torch.randint(0, 6, (48,), device=device_backend)
    state = fresh_state(5, 24, device_backend, initialised=True)
    check_against_oracle(features, labels, state)
    assert state[0].dtype == torch.float32 and state[1].dtype == torch.float32


def test_large_magnitude_is_stable(device_backend):
    # Offset 1e4, spread 1: a one-pass fp32 sum of squares would lose the variance entirely.
    features = 1e4 + torch.randn(40, 16, device=device_backend)
    labels = torch.randint(0, 3, (40,), device=device_backend)
    mean, std, seen = fresh_state(3, 16, device_backend)
    expected = stats_update_oracle(features, labels, mean, std, seen, 0.1, False)
    segmented_stats_update_(features, labels, mean, std, seen)
    torch.testing.assert_close(std.cpu().double(), expected[1], atol=1e-3, rtol=1e-3)
    assert (std > 0.2).all()  # the spread survived


def test_non_contiguous_and_int32(device_backend):
    base = torch.randn(32, 80, device=device_backend)
    features = base[:, ::4]  # [32, 20], stride 4 in the feature dim
    labels = torch.randint(-1, 5, (64,), device=device_backend).to(torch.int32)[::2]
    assert not features.is_contiguous() and not labels.is_contiguous()
    check_against_oracle(features, labels, fresh_state(4, 20, device_backend, initialised=True))


def test_successive_steps_follow_momentum(device_backend):
    state = fresh_state(6, 10, device_backend)
    for step in range(4):
        features = torch.randn(30, 10, device=device_backend) + step
        labels = torch.randint(0, 7, (30,), device=device_backend)
        check_against_oracle(features, labels, state, momentum=0.25)


def test_hand_computed_case():
    # class 0: rows [1, 2], [3, 6] -> mean [2, 4], unbiased std [sqrt(2), sqrt(8)]
    # class 1: one row [5, 5]; then a second step pushes class 0 with momentum 0.5.
    features = torch.tensor([[1.0, 2.0], [3.0, 6.0], [5.0, 5.0], [9.0, 9.0]])
    labels = torch.tensor([0, 0, 1, 2])  # 2 is background for C = 2
    mean, std, seen = torch.zeros(2, 2), torch.zeros(2, 2), torch.zeros(2, dtype=torch.long)
    segmented_stats_update_(features, labels, mean, std, seen, momentum=0.5)
    assert mean.tolist() == [[2.0, 4.0], [5.0, 5.0]]
    torch.testing.assert_close(std, torch.tensor([[2.0**0.5, 8.0**0.5], [0.0, 0.0]]))
    assert seen.tolist() == [1, 1]
    segmented_stats_update_(features[:2] + 2, labels[:2], mean, std, seen, momentum=0.5)
    assert mean.tolist() == [[3.0, 5.0], [5.0, 5.0]]
    torch.testing.assert_close(std, torch.tensor([[2.0**0.5, 8.0**0.5], [0.0, 0.0]]))
    assert seen.tolist() == [2, 1]


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    n=st.integers(0, 40),
    c=st.integers(1, 8),
    d=st.integers(1, 20),
    seed=st.integers(0, 2**31 - 1),
    momentum=st.floats(0.0, 1.0),
    momentum_on_var=st.booleans(),
    backend=st.sampled_from(cpu_property_backends()),
)
def test_property_random_layouts(n, c, d, seed, momentum, momentum_on_var, backend):
    gen = torch.Generator().manual_seed(seed)
    features = torch.randn(n, d, generator=gen) * 5
    labels = torch.randint(-2, c + 2, (n,), generator=gen)
    with _library.use_backend("cpu", backend):
        state = fresh_state(c, d, "cpu", initialised=seed % 2 == 0)
        check_against_oracle(features, labels, state, momentum, momentum_on_var)


def poisoned(n, c, d, device, dtype=torch.float32, seed=0):
    """A batch with NaN / +Inf / -Inf rows among foreground, background and ignored rows: each
    bad row holds a single bad value, at the first, the last or a middle dimension; one class
    has only bad rows, one has a single good row left."""
    gen = torch.Generator().manual_seed(seed)
    features = torch.randn(n, d, generator=gen) * 3 + 1
    labels = torch.randint(-1, c + 1, (n,), generator=gen)
    labels[(labels == 0) | (labels == 1)] = 2
    labels[:4] = 0  # class 0: every row bad
    labels[4:7] = 1  # class 1: one good row of three
    bad_rows = [0, 1, 2, 3, 4, 5, 9, n - 1, n - 3]
    values = [float("nan"), float("inf"), float("-inf")]
    for i, row in enumerate(bad_rows):
        features[row, [0, d - 1, d // 2][i % 3]] = values[i % 3]
    labels[n - 3] = c  # a background row with a NaN: skipped, not counted
    return features.to(dtype).to(device), labels.to(device)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("dim", [1, 7, 300], ids=["d1", "d7", "d300"])
def test_nonfinite_rows_are_skipped_and_counted(device_backend, dtype, dim):
    features, labels = poisoned(40, 5, dim, device_backend, dtype)
    mean, std, seen = fresh_state(5, dim, device_backend, initialised=True)
    expected = stats_update_oracle(features, labels, mean, std, seen, 0.1, False)
    counter = torch.full((1,), 3, dtype=torch.long, device=device_backend)
    segmented_stats_update_(features, labels, mean, std, seen, nonfinite=counter)
    assert torch.isfinite(mean).all() and torch.isfinite(std).all()
    torch.testing.assert_close(mean.cpu().double(), expected[0], **STATS_TOL)
    torch.testing.assert_close(std.cpu().double(), expected[1], **STATS_TOL)
    assert torch.equal(seen.cpu(), expected[2])
    bad = nonfinite_rows_oracle(features, labels, 5)
    assert bad >= 6, "the batch has bad foreground rows"
    assert counter.item() == 3 + bad, f"nonfinite: expected 3 + {bad}, got {counter.item()}"


def test_nonfinite_rows_skipped_without_a_counter(device_backend):
    features, labels = poisoned(40, 5, 9, device_backend)
    mean, std, seen = fresh_state(5, 9, device_backend)
    expected = stats_update_oracle(features, labels, mean, std, seen, 0.1, False)
    segmented_stats_update_(features, labels, mean, std, seen)
    torch.testing.assert_close(mean.cpu().double(), expected[0], **STATS_TOL)
    assert torch.equal(seen.cpu(), expected[2])
    assert seen[0] == 0, "a class with only bad rows is not seen"


def test_nonfinite_counter_argument_checked():
    features, labels, mean, std, seen, m, v = stats_args("cpu")
    for bad, exc, match in (
        (torch.zeros(2, dtype=torch.long), ValueError, r"nonfinite: expected shape \(1,\)"),
        (torch.zeros(1), TypeError, "nonfinite: expected dtype int64"),
    ):
        with pytest.raises(exc, match=match):
            segmented_stats_update_(features, labels, mean, std, seen, m, v, nonfinite=bad)


def test_zero_feature_dims_rejected(device_backend):
    # D = 0 used to pass validation; then the CUDA kernel never counted a class as seen (the
    # reference does) and the Triton kernel could not tile D in blocks of size 0.
    features = torch.zeros(4, 0, device=device_backend)
    labels = torch.tensor([0, 1, 1, 2], device=device_backend)
    mean, std, seen = fresh_state(3, 0, device_backend)
    with pytest.raises(ValueError, match=r"^mean: expected D >= 1 feature dimensions, got 0$"):
        segmented_stats_update_(features, labels, mean, std, seen)
    assert seen.tolist() == [0, 0, 0]


@pytest.mark.cuda
@pytest.mark.parametrize("device_backend", cuda_backend_params(), indirect=True)
@pytest.mark.parametrize("case", STATS_LARGE_LAYOUTS, ids=[c[0] for c in STATS_LARGE_LAYOUTS])
def test_large_layouts_on_the_gpu(device_backend, case):
    # several row chunks, D tiles, a class only in the last chunk (tests/cases.py)
    _, n, c, d, make_labels = case
    features = (torch.randn(n, d) * 3 + 1).to(device_backend)
    labels = make_labels(n, c).to(device_backend)
    check_against_oracle(features, labels, fresh_state(c, d, device_backend, initialised=True))


@needs_opcheck
def test_opcheck_segmented_stats_update(device_backend):
    torch.library.opcheck(
        torch.ops.fasa_fast.segmented_stats_update_.default, stats_args(device_backend)
    )


BAD_STATS_CALLS = [
    ("features-1d", lambda a: a.update(features=a["features"][:, 0]), ValueError, "features: expected a 2-D"),
    ("labels-float", lambda a: a.update(labels=a["labels"].float()), TypeError, "labels: expected dtype int64, int32"),
    ("labels-length", lambda a: a.update(labels=a["labels"][:-1]), ValueError, r"labels: expected shape \(24,\) \(N rows of features\)"),
    ("features-int", lambda a: a.update(features=a["features"].long()), TypeError, "features: expected dtype"),
    ("features-double", lambda a: a.update(features=a["features"].double()), TypeError, "features: expected dtype"),
    ("mean-dim-mismatch", lambda a: a.update(mean=a["mean"][:, :-1]), ValueError, r"mean: expected shape \(\d+, 12\) \(D columns of features\)"),
    ("std-shape", lambda a: a.update(std=a["std"][:-1]), ValueError, "std: expected shape"),
    ("seen-classes", lambda a: a.update(seen=a["seen"][:-1]), ValueError, r"seen: expected shape \(5,\)"),
    ("seen-dtype", lambda a: a.update(seen=a["seen"].int()), TypeError, "seen: expected dtype int64"),
    ("mean-fp16", lambda a: a.update(mean=a["mean"].half()), TypeError, "mean: expected dtype float32"),
    ("momentum-range", lambda a: a.update(momentum=1.5), ValueError, "momentum: expected a value in"),
    ("device-mismatch", lambda a: a.update(labels=a["labels"].to("meta")), ValueError, "labels: expected a tensor on cpu"),
    ("state-non-contiguous", lambda a: a.update(std=a["std"].T.contiguous().T), ValueError, "std: the state is updated in place"),
    ("not-a-tensor", lambda a: a.update(labels=[0, 1]), TypeError, "labels: expected a torch.Tensor"),
]  # fmt: skip


@pytest.mark.parametrize("case", BAD_STATS_CALLS, ids=[c[0] for c in BAD_STATS_CALLS])
def test_bad_stats_input_names_the_argument(case):
    _, mutate, exc, match = case
    names = ("features", "labels", "mean", "std", "seen", "momentum", "momentum_on_var")
    kwargs = dict(zip(names, stats_args("cpu"), strict=True))
    before = (kwargs["mean"].clone(), kwargs["std"].clone(), kwargs["seen"].clone())
    mutate(kwargs)
    with pytest.raises(exc, match=match):
        segmented_stats_update_(**kwargs)
    for old, name in zip(before, ("mean", "std", "seen"), strict=True):
        if kwargs[name].shape == old.shape and kwargs[name].dtype == old.dtype:
            assert torch.equal(kwargs[name], old), f"{name} changed by a refused call"


def test_direct_op_call_is_checked_by_the_kernel():
    # Bypassing the wrapper must still never read out of bounds.
    if not fasa_fast.extension_loaded():
        pytest.skip("the extension's own checks are under test")
    features, labels, mean, std, seen, m, v = stats_args("cpu")
    with pytest.raises(RuntimeError, match="seen"):
        torch.ops.fasa_fast.segmented_stats_update_(features, labels, mean, std, seen[:2], m, v)
