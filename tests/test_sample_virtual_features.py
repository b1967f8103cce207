"""sample_virtual_features on every backend: exact draws against the oracle, statistics,
overflow behaviour, reproducibility."""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fasa_fast.ops import _library, make_rng_state, sample_virtual_features
from tests.backends import cpu_property_backends, cuda_backend_params, needs_opcheck
from tests.cases import SAMPLE_FEATURE_TOL, SAMPLE_LARGE_LAYOUTS, SAMPLE_LAYOUTS, sample_stats
from tests.oracle import philox_oracle, sample_oracle


def check_against_oracle(mean, std, seen, prob, seed, k, capacity, calls=2):
    device = mean.device
    rng = make_rng_state(seed, device)
    for call in range(calls):
        feats, labels, counts = sample_virtual_features(mean, std, seen, prob, rng, k, capacity)
        exp_feats, exp_labels, exp_counts = sample_oracle(
            mean.cpu(), std.cpu(), seen.cpu(), prob.cpu(), seed, call, k, capacity
        )
        assert torch.equal(labels.cpu(), exp_labels)
        assert counts.tolist() == list(exp_counts)
        torch.testing.assert_close(feats.cpu().double(), exp_feats, **SAMPLE_FEATURE_TOL)
    assert rng.tolist() == [seed, calls]


def test_philox_known_answers():
    # Random123's published known-answer vectors for philox4x32_10.
    assert philox_oracle((0, 0, 0, 0), (0, 0)) == (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)
    from fasa_fast.ops.reference import philox4x32_10

    ones = torch.tensor(0xFFFFFFFF)
    got = [int(v) for v in philox4x32_10(ones, ones, ones, ones, ones, ones)]
    assert got == [0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD]
    pi = [0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344, 0xA4093822, 0x299F31D0]
    got = [int(v) for v in philox4x32_10(*[torch.tensor(v) for v in pi])]
    assert got == [0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1]


@pytest.mark.parametrize("case", SAMPLE_LAYOUTS, ids=[c[0] for c in SAMPLE_LAYOUTS])
def test_layouts_match_oracle(device_backend, case):
    _, c, d, k, capacity, make_prob = case
    mean, std, seen = sample_stats(c, d, device_backend)
    prob = make_prob(c).to(device_backend)
    check_against_oracle(mean, std, seen, prob, seed=2**40 + 17, k=k, capacity=capacity)


@pytest.mark.parametrize("key_value", [-(2**63), -5, 2**40 + 17, 2**63 - 1])
def test_key_replaces_the_seed_and_the_counter_still_advances(device_backend, key_value):
    # the draw is the oracle's under `key`, whatever rng_state[0] holds; only rng_state[1] moves
    case = SAMPLE_LAYOUTS[0]
    _, c, d, k, capacity, make_prob = case
    mean, std, seen = sample_stats(c, d, device_backend)
    prob = make_prob(c).to(device_backend)
    rng = torch.tensor([12345, 7], device=device_backend)
    key = torch.tensor([key_value], device=device_backend)
    for call in (7, 8):
        feats, labels, counts = sample_virtual_features(
            mean, std, seen, prob, rng, k, capacity, key=key
        )
        exp_feats, exp_labels, exp_counts = sample_oracle(
            mean.cpu(), std.cpu(), seen.cpu(), prob.cpu(), key_value, call, k, capacity
        )
        assert torch.equal(labels.cpu(), exp_labels)
        assert counts.tolist() == list(exp_counts)
        torch.testing.assert_close(feats.cpu().double(), exp_feats, **SAMPLE_FEATURE_TOL)
    assert rng.tolist() == [12345, 9] and key.tolist() == [key_value]


def test_no_class_seen_gives_padding_only(device_backend):
    mean, std, _ = sample_stats(8, 4, device_backend)
    seen = torch.zeros(8, dtype=torch.long, device=device_backend)
    prob = torch.ones(8, device=device_backend)
    feats, labels, counts = sample_virtual_features(
        mean, std, seen, prob, make_rng_state(1, device_backend), 1, 5
    )
    assert counts.tolist() == [0, 0]
    assert (labels == -1).all() and (feats == 0).all()


def test_empty_class_set(device_backend):
    mean = torch.zeros(0, 4, device=device_backend)
    seen = torch.zeros(0, dtype=torch.long, device=device_backend)
    prob = torch.zeros(0, device=device_backend)
    rng = make_rng_state(3, device_backend)
    feats, labels, counts = sample_virtual_features(mean, mean, seen, prob, rng, 1, 3)
    assert feats.shape == (3, 4) and (labels == -1).all() and counts.tolist() == [0, 0]
    assert rng.tolist() == [3, 1]


def test_reproducible_and_advancing(device_backend):
    mean, std, seen = sample_stats(25, 8, device_backend, seen_fraction=1.0)
    prob = torch.full((25,), 0.5, device=device_backend)
    a = sample_virtual_features(mean, std, seen, prob, make_rng_state(9, device_backend), 1, 32)
    b = sample_virtual_features(mean, std, seen, prob, make_rng_state(9, device_backend), 1, 32)
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    rng = make_rng_state(9, device_backend)
    sample_virtual_features(mean, std, seen, prob, rng, 1, 32)
    c = sample_virtual_features(mean, std, seen, prob, rng, 1, 32)
    assert not torch.equal(a[1], c[1])  # the second call is a new draw


@pytest.mark.parametrize("backend", [b for b in _library.BACKENDS if b != "triton"])
def test_selection_rates_match_prob(backend):
    if backend == "native" and not _library.native_available("cpu"):
        pytest.skip("no extension")
    num_classes, calls = 12, 3000
    prob = torch.linspace(0.02, 0.95, num_classes)
    mean, std = torch.zeros(num_classes, 1), torch.ones(num_classes, 1)
    seen = torch.ones(num_classes, dtype=torch.long)
    seen[3] = 0  # never seen: never selected, whatever its probability
    rng = make_rng_state(123)
    hits = torch.zeros(num_classes)
    with _library.use_backend("cpu", backend):
        for _ in range(calls):
            _, labels, _ = sample_virtual_features(mean, std, seen, prob, rng, 1, num_classes)
            hits += torch.bincount(labels[labels >= 0], minlength=num_classes)
    rate = hits / calls
    expected = torch.where(seen > 0, prob, torch.zeros(()))
    sigma = (expected * (1 - expected) / calls).sqrt().clamp(min=1e-3)
    assert ((rate - expected).abs() < 5 * sigma).all(), (rate, expected)


def test_feature_moments_match_statistics():
    mean = torch.tensor([[1.0, -2.0, 10.0, 0.0, 3.0]])
    std = torch.tensor([[0.5, 2.0, 0.1, 1.0, 0.0]])
    seen, prob = torch.ones(1, dtype=torch.long), torch.ones(1)
    rng = make_rng_state(77)
    k = 4000
    feats, labels, counts = sample_virtual_features(mean, std, seen, prob, rng, k, k)
    assert counts.tolist() == [k, k] and (labels == 0).all()
    n = float(k)
    assert ((feats.mean(0) - mean[0]).abs() <= 5 * std[0] / n**0.5 + 1e-6).all()
    assert ((feats.std(0) - std[0]).abs() <= 5 * std[0] / (2 * n) ** 0.5 + 1e-6).all()
    # distinct replicas of one class are independent draws
    assert (feats[:, 0].unique().numel()) == k


def test_overflow_drops_whole_classes_fairly():
    num_classes, k, capacity, calls = 10, 2, 8, 2000  # 10 classes always selected, 4 fit
    mean, std = torch.zeros(num_classes, 2), torch.ones(num_classes, 2)
    seen, prob = torch.ones(num_classes, dtype=torch.long), torch.ones(num_classes)
    rng = make_rng_state(5)
    kept = torch.zeros(num_classes)
    for _ in range(calls):
        _, labels, counts = sample_virtual_features(mean, std, seen, prob, rng, k, capacity)
        assert counts.tolist() == [capacity, num_classes * k]
        per_class = torch.bincount(labels, minlength=num_classes)
        assert set(per_class.tolist()) <= {0, k}  # whole classes are kept or dropped
        kept += per_class / k
    rate = kept / calls
    assert ((rate - 0.4).abs() < 0.05).all(), rate  # every class kept ~4/10 of the time


@pytest.mark.parametrize("k, capacity", [(3, 7), (4, 6), (2, 5)])
def test_overflow_keeps_part_of_the_boundary_class(device_backend, k, capacity):
    # Rows are packed k per class in cyclic class order and cut at `capacity`: the first
    # capacity // k selected classes keep all k rows, the next keeps its first capacity % k
    # rows (replicas 0, 1, ...), the rest none. Every class is selected here, so the order
    # is consecutive from the random start.
    num_classes, seed = 10, 11
    mean, std, _ = sample_stats(num_classes, 5, device_backend)
    seen = torch.ones(num_classes, dtype=torch.long, device=device_backend)
    prob = torch.ones(num_classes, device=device_backend)
    rng = make_rng_state(seed, device_backend)
    full, part = divmod(capacity, k)
    starts = set()
    for call in range(12):
        feats, labels, counts = sample_virtual_features(mean, std, seen, prob, rng, k, capacity)
        start = int(labels[0])
        starts.add(start)
        order = [(start + i) % num_classes for i in range(full + 1)]
        assert labels.tolist() == [c for c in order[:full] for _ in range(k)] + [order[full]] * part
        assert counts.tolist() == [capacity, num_classes * k]
        exp_feats, exp_labels, _ = sample_oracle(
            mean.cpu(), std.cpu(), seen.cpu(), prob.cpu(), seed, call, k, capacity
        )
        assert torch.equal(labels.cpu(), exp_labels)
        torch.testing.assert_close(feats.cpu().double(), exp_feats, **SAMPLE_FEATURE_TOL)
    assert len(starts) > 1  # the boundary class moves with the random start


BAD_CALLS = [
    ("prob-shape", {"prob": torch.ones(3)}, ValueError, r"prob: expected shape \(4,\)"),
    ("prob-dtype", {"prob": torch.ones(4, dtype=torch.float64)}, TypeError, "prob: expected dtype float32"),
    ("rng-shape", {"rng_state": torch.zeros(3, dtype=torch.long)}, ValueError, r"rng_state: expected shape \(2,\)"),
    ("rng-dtype", {"rng_state": torch.zeros(2)}, TypeError, "rng_state: expected dtype int64"),
    ("k-zero", {"k": 0}, ValueError, "k: expected an int >= 1"),
    ("capacity-negative", {"capacity": -1}, ValueError, "capacity: expected an int >= 0"),
    ("seen-dtype", {"seen": torch.ones(4, dtype=torch.int32)}, TypeError, "seen: expected dtype int64"),
    ("std-shape", {"std": torch.ones(4, 2)}, ValueError, "std: expected shape"),
    ("device", {"rng_state": torch.zeros(2, dtype=torch.long, device="meta")}, ValueError, "rng_state: expected a tensor on cpu"),
    ("zero-dims", {"mean": torch.zeros(4, 0), "std": torch.ones(4, 0)}, ValueError, r"^mean: expected D >= 1 feature dimensions, got 0$"),
    ("key-shape", {"key": torch.zeros(2, dtype=torch.long)}, ValueError, r"key: expected shape \(1,\) \(one 64-bit Philox key\)"),
    ("key-dtype", {"key": torch.zeros(1, dtype=torch.int32)}, TypeError, "key: expected dtype int64"),
    ("key-device", {"key": torch.zeros(1, dtype=torch.long, device="meta")}, ValueError, "key: expected a tensor on cpu"),
]  # fmt: skip


@pytest.mark.parametrize("case", BAD_CALLS, ids=[c[0] for c in BAD_CALLS])
def test_bad_input_names_the_argument(case):
    _, override, exc, match = case
    kwargs = {
        "mean": torch.zeros(4, 3),
        "std": torch.ones(4, 3),
        "seen": torch.ones(4, dtype=torch.long),
        "prob": torch.ones(4),
        "rng_state": make_rng_state(0),
        "k": 1,
        "capacity": 4,
        **override,
    }
    with pytest.raises(exc, match=match):
        sample_virtual_features(**kwargs)


@settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    c=st.integers(0, 12),
    d=st.integers(1, 9),
    k=st.integers(1, 3),
    capacity=st.integers(0, 12),
    seed=st.integers(-(2**63), 2**63 - 1),
    backend=st.sampled_from(cpu_property_backends()),
)
def test_property_random_layouts(c, d, k, capacity, seed, backend):
    gen = torch.Generator().manual_seed(abs(seed) % 2**31)
    mean = torch.randn(c, d, generator=gen)
    std = torch.rand(c, d, generator=gen)
    seen = torch.randint(0, 2, (c,), generator=gen)
    prob = torch.rand(c, generator=gen)
    with _library.use_backend("cpu", backend):
        check_against_oracle(mean, std, seen, prob, seed, k, capacity, calls=1)


@pytest.mark.cuda
@pytest.mark.parametrize("device_backend", cuda_backend_params(), indirect=True)
@pytest.mark.parametrize("case", SAMPLE_LARGE_LAYOUTS, ids=[c[0] for c in SAMPLE_LARGE_LAYOUTS])
def test_large_layouts_on_the_gpu(device_backend, case):
    # several class chunks in the selection, rows longer than one fill pass (tests/cases.py)
    _, c, d, k, capacity, make_prob = case
    mean, std, seen = sample_stats(c, d, device_backend)
    prob = make_prob(c).to(device_backend)
    check_against_oracle(mean, std, seen, prob, 11, k, capacity)


@needs_opcheck
def test_opcheck_sample_virtual_features(device_backend):
    c, d = 11, 6
    args = (
        torch.randn(c, d, device=device_backend),
        torch.rand(c, d, device=device_backend),
        torch.ones(c, dtype=torch.long, device=device_backend),
        torch.full((c,), 0.5, device=device_backend),
        make_rng_state(4, device_backend),
        2,
        8,
    )
    torch.library.opcheck(torch.ops.fasa_fast.sample_virtual_features.default, args)
