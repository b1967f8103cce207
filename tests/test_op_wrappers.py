"""The op wrappers' argument checks and defaults: every argument check names its own argument
(not a neighbour's), and the documented defaults (``momentum=0.1``, ``momentum_on_var=False``,
``eps=1e-6``, ``k=1``, ``capacity=64``) are the ones used, checked against the float64 oracles;
also the reference kernels' rounding and the random-number helpers. (A mutation run of
``scripts/mutation.sh`` found these unpinned.)"""

from __future__ import annotations

import math

import pytest
import torch

from fasa_fast import (
    fisher_distance,
    make_rng_state,
    sample_virtual_features,
    segmented_stats_update_,
)
from fasa_fast.ops import _library
from tests.oracle import fisher_oracle, sample_oracle, stats_update_oracle


def stats_kwargs():
    return dict(
        features=torch.randn(6, 3),
        labels=torch.tensor([0, 1, 2, 0, 1, 2]),
        mean=torch.zeros(3, 3),
        std=torch.zeros(3, 3),
        seen=torch.zeros(3, dtype=torch.long),
    )


def fisher_kwargs():
    return dict(mean=torch.randn(4, 3), std=torch.ones(4, 3), classes=torch.tensor([0, 2]))


def sample_kwargs():
    return dict(
        mean=torch.randn(4, 3),
        std=torch.ones(4, 3),
        seen=torch.ones(4, dtype=torch.long),
        prob=torch.full((4,), 0.5),
        rng_state=make_rng_state(0),
    )


OPS = {
    "stats": (segmented_stats_update_, stats_kwargs),
    "fisher": (fisher_distance, fisher_kwargs),
    "sample": (sample_virtual_features, sample_kwargs),
}


def non_contiguous(t):
    return t.T.contiguous().T if t.dim() == 2 else torch.stack([t, t], 1)[:, 0]


# (op, argument, how it is broken, exception, message it must start with)
BAD = [
    # not a tensor
    *[
        (op, arg, lambda t: t.tolist(), TypeError, f"{arg}: expected a torch.Tensor, got list")
        for op, args in (
            ("stats", ("features", "labels", "mean", "std", "seen")),
            ("fisher", ("mean", "std", "classes")),
            ("sample", ("mean", "std", "seen", "prob", "rng_state")),
        )
        for arg in args
    ],
    # wrong number of dimensions
    ("stats", "features", lambda t: t[:, 0], ValueError, "features: expected a 2-D [N, D] tensor"),
    ("stats", "labels", lambda t: t[:, None], ValueError, "labels: expected a 1-D [N] tensor"),
    ("stats", "mean", lambda t: t[:, 0], ValueError, "mean: expected a 2-D [C, D] tensor"),
    ("fisher", "mean", lambda t: t[:, 0], ValueError, "mean: expected a 2-D [C, D] tensor"),
    ("fisher", "classes", lambda t: t[:, None], ValueError, "classes: expected a 1-D [K] tensor"),
    ("sample", "mean", lambda t: t[:, 0], ValueError, "mean: expected a 2-D [C, D] tensor"),
    # wrong dtype
    ("stats", "features", lambda t: t.double(), TypeError, "features: expected dtype float32, float16, bfloat16"),
    ("stats", "labels", lambda t: t.float(), TypeError, "labels: expected dtype int64, int32"),
    ("stats", "mean", lambda t: t.double(), TypeError, "mean: expected dtype float32"),
    ("stats", "std", lambda t: t.double(), TypeError, "std: expected dtype float32"),
    ("stats", "seen", lambda t: t.int(), TypeError, "seen: expected dtype int64"),
    ("fisher", "mean", lambda t: t.double(), TypeError, "mean: expected dtype float32"),
    ("fisher", "std", lambda t: t.double(), TypeError, "std: expected dtype float32"),
    ("sample", "mean", lambda t: t.double(), TypeError, "mean: expected dtype float32"),
    ("sample", "std", lambda t: t.double(), TypeError, "std: expected dtype float32"),
    ("sample", "seen", lambda t: t.int(), TypeError, "seen: expected dtype int64"),
    ("sample", "prob", lambda t: t.double(), TypeError, "prob: expected dtype float32"),
    ("sample", "rng_state", lambda t: t.int(), TypeError, "rng_state: expected dtype int64"),
    # on another device than the first statistics argument
    *[
        (op, arg, lambda t: t.to("meta"), ValueError, f"{arg}: expected a tensor on cpu (the device of mean), got meta")
        for op, args in (
            ("stats", ("features", "labels", "std", "seen")),
            ("fisher", ("std", "classes")),
            ("sample", ("std", "seen", "prob", "rng_state")),
        )
        for arg in args
    ],
    # state that is updated in place
    ("stats", "mean", lambda t: t.requires_grad_(), RuntimeError, "mean: FASA's running statistics"),
    ("stats", "std", lambda t: t.requires_grad_(), RuntimeError, "std: FASA's running statistics"),
    ("stats", "mean", non_contiguous, ValueError, "mean: the state is updated in place"),
    ("stats", "std", non_contiguous, ValueError, "std: the state is updated in place"),
    ("stats", "seen", non_contiguous, ValueError, "seen: the state is updated in place"),
    ("sample", "rng_state", non_contiguous, ValueError, "rng_state: the state is updated in place"),
]  # fmt: skip


@pytest.mark.parametrize(
    "op, arg, breaks, exc, message",
    BAD,
    ids=[f"{b[0]}-{b[1]}-{i}" for i, b in enumerate(BAD)],
)
def test_each_check_names_its_own_argument(op, arg, breaks, exc, message):
    fn, make = OPS[op]
    kwargs = make()
    kwargs[arg] = breaks(kwargs[arg])
    with pytest.raises(exc) as info:
        fn(**kwargs)
    assert str(info.value).startswith(message), (
        f"{op} with a bad {arg}: expected a message starting {message!r}, got {str(info.value)!r}"
    )


@pytest.mark.parametrize("op", ["stats", "sample"])
def test_zero_feature_dimensions_are_refused_naming_mean(op):
    fn, make = OPS[op]
    kwargs = make()
    kwargs["mean"] = kwargs["mean"][:, :0].contiguous()
    kwargs["std"] = kwargs["std"][:, :0].contiguous()
    if op == "stats":
        kwargs["features"] = torch.zeros(6, 0)
    with pytest.raises(ValueError, match="mean: expected D >= 1 feature dimensions, got 0"):
        fn(**kwargs)


@pytest.mark.parametrize(
    "override, message",
    [
        (dict(k=0), "k: expected an int >= 1, got 0"),
        (dict(k=True), "k: expected an int >= 1, got True"),
        (dict(k=1.0), "k: expected an int >= 1, got 1.0"),
        (dict(capacity=-1), "capacity: expected an int >= 0, got -1"),
        (dict(capacity=True), "capacity: expected an int >= 0, got True"),
        (dict(capacity=2.0), "capacity: expected an int >= 0, got 2.0"),
    ],
)
def test_sample_refuses_bad_k_and_capacity(override, message):
    with pytest.raises(ValueError, match=message):
        sample_virtual_features(**sample_kwargs(), **override)


# ---- documented defaults, against the float64 oracles ------------------------------------------
def test_stats_update_defaults_are_momentum_0_1_averaging_the_std():
    torch.manual_seed(1)
    kwargs = stats_kwargs()
    mean, std, seen = kwargs["mean"], kwargs["std"], kwargs["seen"]
    segmented_stats_update_(kwargs["features"], kwargs["labels"], mean, std, seen)
    # second batch: class 0 with a single row (its std is kept unless the variance is averaged)
    features, labels = torch.randn(3, 3), torch.tensor([0, 1, 1])
    expected = stats_update_oracle(features, labels, mean, std, seen, 0.1, False)
    segmented_stats_update_(features, labels, mean, std, seen)
    for name, got, want in zip(("mean", "std"), (mean, std), expected[:2], strict=False):
        torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-6, msg=name)
    assert seen.tolist() == [2, 2, 1]


def test_fisher_distance_default_eps_is_1e_6():
    mean = torch.tensor([[0.0, 0.0], [1.0, 2.0]])
    std = torch.zeros(2, 2)  # zero variances: the distance is set by eps alone
    got = fisher_distance(mean, std).double()
    torch.testing.assert_close(got, fisher_oracle(mean, std, 1e-6), rtol=1e-5, atol=0.0)
    assert got[0, 1] == pytest.approx((1 + 4) / 2 / 1e-6, rel=1e-5)


def test_sample_defaults_are_k_1_and_capacity_64():
    kwargs = sample_kwargs()
    kwargs["prob"] = torch.ones(4)
    features, labels, counts = sample_virtual_features(**kwargs)
    want_features, want_labels, want_counts = sample_oracle(
        kwargs["mean"], kwargs["std"], kwargs["seen"], kwargs["prob"], 0, 0, 1, 64
    )
    assert features.shape == (64, 3) and counts.tolist() == list(want_counts) == [4, 4]
    assert torch.equal(labels, want_labels)
    torch.testing.assert_close(features.double(), want_features, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("momentum", [0.0, 1.0])
def test_stats_update_accepts_the_momentum_bounds(momentum):
    # [0, 1] is closed: 0 keeps the running statistics, 1 replaces them by the batch's
    kwargs = stats_kwargs()
    mean, std, seen = kwargs["mean"], kwargs["std"], kwargs["seen"]
    segmented_stats_update_(kwargs["features"], kwargs["labels"], mean, std, seen)
    features, labels = torch.randn(6, 3), torch.tensor([0, 1, 2, 0, 1, 2])
    expected = stats_update_oracle(features, labels, mean, std, seen, momentum, False)
    segmented_stats_update_(features, labels, mean, std, seen, momentum)
    torch.testing.assert_close(mean.double(), expected[0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(std.double(), expected[1], rtol=1e-5, atol=1e-6)


# every shape check, with the whole message: the argument, the shape it must have and why
SHAPES = [
    ("stats", "labels", "labels: expected shape (6,) (N rows of features), got (5,)"),
    ("stats", "mean", "mean: expected shape (2, 3) (D columns of features), got (2, 2)"),
    ("stats", "std", "std: expected shape (3, 3) (as mean), got (2, 3)"),
    ("stats", "seen", "seen: expected shape (3,) (C of mean), got (2,)"),
    ("fisher", "std", "std: expected shape (4, 3) (as mean), got (3, 3)"),
    ("sample", "std", "std: expected shape (4, 3) (as mean), got (3, 3)"),
    ("sample", "seen", "seen: expected shape (4,) (C of mean), got (3,)"),
    ("sample", "prob", "prob: expected shape (4,) (C of mean), got (3,)"),
    ("sample", "rng_state", "rng_state: expected shape (2,) (seed, call counter), got (1,)"),
]


@pytest.mark.parametrize("op, arg, message", SHAPES, ids=[f"{s[0]}-{s[1]}" for s in SHAPES])
def test_each_shape_check_says_what_the_shape_must_match(op, arg, message):
    fn, make = OPS[op]
    kwargs = make()
    if (op, arg) == ("stats", "mean"):  # C rows of D columns: cut a column and a row
        kwargs["mean"] = kwargs["mean"][:2, :2].contiguous()
    else:
        kwargs[arg] = kwargs[arg][:-1].contiguous()
    with pytest.raises(ValueError) as info:
        fn(**kwargs)
    assert str(info.value) == message, f"expected {message!r}, got {str(info.value)!r}"


def test_fisher_distance_accepts_a_zero_eps():
    mean, std = torch.tensor([[0.0, 1.0], [2.0, 1.0]]), torch.ones(2, 2)
    got = fisher_distance(mean, std, 0.0)
    torch.testing.assert_close(got.double(), fisher_oracle(mean, std, 0.0))


# ---- the reference kernels: float64 inside, exact uniform and Bernoulli boundaries -------------
# The reference computes in float64 and rounds once: its float32 results equal the float64
# oracle's rounded to float32, element for element (a float32 step inside would leave some
# elements one ulp off, which the tolerance of the cross-backend tests allows).
def test_reference_stats_update_rounds_once_from_float64():
    from fasa_fast.ops.reference import segmented_stats_update_reference

    gen = torch.Generator().manual_seed(5)
    mean, std = torch.randn(6, 16, generator=gen), torch.rand(6, 16, generator=gen) + 0.5
    seen = torch.tensor([0, 3, 3, 1, 2, 5])
    features = torch.randn(40, 16, generator=gen) * 3 + 1
    labels = torch.randint(0, 6, (40,), generator=gen)
    for momentum_on_var in (False, True):
        expected = stats_update_oracle(features, labels, mean, std, seen, 0.3, momentum_on_var)
        got = (mean.clone(), std.clone(), seen.clone())
        segmented_stats_update_reference(features, labels, *got, 0.3, momentum_on_var)
        for name, a, b in zip(("mean", "std"), got[:2], expected[:2], strict=True):
            off = (a != b.float()).sum().item()
            assert off == 0, f"{name} (momentum_on_var={momentum_on_var}): {off} elements differ"


def test_reference_fisher_distance_rounds_once_from_float64():
    from fasa_fast.ops.reference import fisher_distance_reference

    gen = torch.Generator().manual_seed(6)
    mean = torch.randn(12, 24, generator=gen) * 4
    std = torch.rand(12, 24, generator=gen) + 0.1
    got = fisher_distance_reference(mean, std, 1e-6)
    off = (got != fisher_oracle(mean, std, 1e-6).float()).sum().item()
    assert off == 0, f"{off} of 144 distances differ from the float64 oracle rounded to float32"
    chunked = fisher_distance_reference(mean, std, 1e-6, max_elements=24 * 12 * 2)  # 2 rows
    assert torch.equal(chunked, got), "row chunks must give the same matrix"


def test_box_muller_maps_the_extreme_words_inside_zero_one():
    from fasa_fast.ops.reference import _box_muller

    words = torch.tensor([0, 0xFFFFFFFF, 0x7FFFFFFF])
    z0, z1 = _box_muller(words, words)
    # word 0 -> u = 2^-32 (never 0: the log stays finite); the largest word -> u = 1 (float32)
    radius = math.sqrt(-2 * math.log(2.0**-32))
    theta = 2 * math.pi * 2.0**-32
    assert z0[0].item() == pytest.approx(radius * math.cos(theta), rel=1e-6)
    assert z1[0].item() == pytest.approx(radius * math.sin(theta), rel=1e-3)
    assert z0[1].item() == 0.0 and z1[1].item() == 0.0, "u = 1: radius 0"
    radius, theta = math.sqrt(-2 * math.log(0.5)), math.pi  # 0x7FFFFFFF + 1 = 2^31: u = 1/2
    assert z0[2].item() == pytest.approx(radius * math.cos(theta), rel=1e-6)
    assert torch.isfinite(torch.cat([z0, z1])).all()


@pytest.mark.parametrize("backend", ["reference", "native"])
def test_bernoulli_trial_is_word_below_p_times_2_32(backend):
    # find a draw whose class-0 word is a float32 times 2^32 exactly, then set prob[0] to it:
    # the class is drawn with probability p iff word < p * 2^32, so exactly at p it is not,
    # one float32 step above it is
    from fasa_fast.ops import use_backend
    from tests.oracle import philox_oracle

    if backend not in _library.available_backends("cpu"):
        pytest.skip("no compiled CPU kernels")
    seed = 3
    call = next(c for c in range(1, 5000) if philox_oracle((0, 0, 0, c), (seed, 0))[0] % 256 == 0)
    word = philox_oracle((0, 0, 0, call), (seed, 0))[0]
    at = torch.tensor(word / 2.0**32, dtype=torch.float32)
    assert at.double().item() * 2.0**32 == word, "the probability must be exact in float32"
    above = torch.nextafter(at, torch.tensor(2.0))
    drawn = []
    with use_backend("cpu", backend):
        for p in (at, above):
            state = torch.tensor([seed, call], dtype=torch.int64)
            _, labels, counts = sample_virtual_features(
                torch.zeros(1, 4), torch.ones(1, 4), torch.ones(1, dtype=torch.long),
                p.reshape(1), state, 1, 4,
            )  # fmt: skip
            drawn.append(int(counts[1]))
    assert drawn == [0, 1], f"class drawn at p = word / 2^32 and one step above: got {drawn}"


@pytest.mark.parametrize("backend", ["reference", "native"])
def test_bernoulli_trial_compares_the_whole_word(backend):
    # a word one below a float32 multiple of 2^-32 times 2^32: drawn at that p (word < p * 2^32),
    # though the word rounded to float32 would equal p * 2^32
    from fasa_fast.ops import use_backend
    from tests.oracle import philox_oracle

    if backend not in _library.available_backends("cpu"):
        pytest.skip("no compiled CPU kernels")
    seed = 3
    call = next(
        c
        for c in range(1, 5000)
        if philox_oracle((0, 0, 0, c), (seed, 0))[0] % 256 == 255
        and philox_oracle((0, 0, 0, c), (seed, 0))[0] >= 2**24
    )
    word = philox_oracle((0, 0, 0, call), (seed, 0))[0]
    p = torch.tensor((word + 1) / 2.0**32, dtype=torch.float32)
    assert p.double().item() * 2.0**32 == word + 1
    with use_backend("cpu", backend):
        state = torch.tensor([seed, call], dtype=torch.int64)
        _, _, counts = sample_virtual_features(
            torch.zeros(1, 4), torch.ones(1, 4), torch.ones(1, dtype=torch.long),
            p.reshape(1), state, 1, 4,
        )  # fmt: skip
    assert int(counts[1]) == 1, "word < p * 2^32 by one: expected the class drawn"


@pytest.mark.parametrize("seed", [-(2**63), 2**63 - 1, 0])
def test_rng_state_takes_any_64_bit_seed(seed):
    state = make_rng_state(seed)
    assert state.tolist() == [seed, 0] and state.dtype == torch.int64


@pytest.mark.parametrize("seed", [2**63, -(2**63) - 1])
def test_rng_state_refuses_seeds_beyond_64_bits(seed):
    with pytest.raises(ValueError, match=f"seed: expected a 64-bit integer, got {seed}"):
        make_rng_state(seed)


def test_reference_fisher_distance_bounds_its_intermediates():
    # the C x C x D differences are formed max_elements at a time (here one row of 4 x 16):
    # no tensor the reference creates is larger than that or than the C x C result
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_flatten  # tree_leaves is newer than torch 2.1

    from fasa_fast.ops.reference import fisher_distance_reference

    class Largest(TorchDispatchMode):
        largest = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            for leaf in tree_flatten(out)[0]:
                if isinstance(leaf, torch.Tensor):
                    Largest.largest = max(Largest.largest, leaf.numel())
            return out

    mean, std = torch.randn(4, 16), torch.rand(4, 16) + 0.5
    with Largest():
        got = fisher_distance_reference(mean, std, 1e-6, max_elements=64)
    assert Largest.largest <= 64, f"largest tensor: {Largest.largest} elements, bound 64"
    torch.testing.assert_close(got.double(), fisher_oracle(mean, std, 1e-6))
