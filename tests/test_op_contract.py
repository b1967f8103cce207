"""The custom-op contract: opcheck on every backend, autograd safety, torch.compile, errors."""

from __future__ import annotations

import pytest
import torch

import fasa_fast
from fasa_fast.ops import (
    fisher_distance,
    make_rng_state,
    sample_virtual_features,
    segmented_stats_update_,
)


def stats_args(device, n=24, c=5, d=12):
    return (
        torch.randn(n, d, device=device),
        torch.randint(-1, c + 1, (n,), device=device),
        torch.randn(c, d, device=device),
        torch.rand(c, d, device=device),
        torch.randint(0, 2, (c,), device=device),
        0.1,
        False,
    )


def test_opcheck_segmented_stats_update(device_backend):
    torch.library.opcheck(
        torch.ops.fasa_fast.segmented_stats_update_.default, stats_args(device_backend)
    )


def test_opcheck_fisher_distance(device_backend):
    mean = torch.randn(9, 7, device=device_backend)
    std = torch.rand(9, 7, device=device_backend) + 0.1
    torch.library.opcheck(torch.ops.fasa_fast.fisher_distance.default, (mean, std, 1e-6))


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


def fasa_training_step(fc, features, labels, mean, std, seen, prob, rng_state):
    """FASA's training-side work for one step: statistics update, virtual features, and the
    virtual-feature loss through the classifier (method §1-2)."""
    segmented_stats_update_(features, labels, mean, std, seen, 0.1, False)
    virtual, virtual_labels, _ = sample_virtual_features(mean, std, seen, prob, rng_state, 1, 16)
    valid = (virtual_labels >= 0).float()
    per_row = torch.nn.functional.cross_entropy(
        fc(virtual), virtual_labels.clamp(min=0), reduction="none"
    )
    return (per_row * valid).sum() / valid.sum().clamp(min=1.0)


def training_inputs(c=6, d=8, n=40):
    fc = torch.nn.Linear(d, c + 1)
    features = torch.randn(n, d, requires_grad=True)
    labels = torch.randint(0, c + 1, (n,))
    state = (torch.zeros(c, d), torch.zeros(c, d), torch.zeros(c, dtype=torch.long))
    return fc, features, labels, state, torch.ones(c), make_rng_state(11)


def test_virtual_loss_sends_gradient_to_classifier_only():
    fc, features, labels, (mean, std, seen), prob, rng = training_inputs()
    loss = fasa_training_step(fc, features, labels, mean, std, seen, prob, rng)
    assert loss.requires_grad
    loss.backward()
    assert fc.weight.grad is not None and fc.weight.grad.abs().sum() > 0
    assert features.grad is None  # no path from the virtual loss back into the real features
    assert mean.grad is None and not mean.requires_grad and not std.requires_grad


def test_training_step_compiles_fullgraph():
    fc, features, labels, state, prob, rng = training_inputs()
    eager_state = [t.clone() for t in state]
    eager_rng = rng.clone()
    expected = fasa_training_step(fc, features, labels, *eager_state, prob, eager_rng)
    compiled = torch.compile(fasa_training_step, fullgraph=True, backend="aot_eager")
    got = compiled(fc, features, labels, *state, prob, rng)
    torch.testing.assert_close(got, expected)
    for a, b in zip(state, eager_state, strict=True):
        torch.testing.assert_close(a, b)
    assert torch.equal(rng, eager_rng)


def test_stats_update_takes_no_gradient_into_state():
    weight = torch.randn(6, 8, requires_grad=True)
    inputs = torch.randn(10, 6)
    features = inputs @ weight  # features with autograd history, as x_cls in a head
    labels = torch.randint(0, 3, (10,))
    mean, std, seen = torch.zeros(3, 8), torch.zeros(3, 8), torch.zeros(3, dtype=torch.long)
    segmented_stats_update_(features, labels, mean, std, seen)
    assert not mean.requires_grad and not std.requires_grad and mean.grad_fn is None
    features.sum().backward()  # the caller's own graph is untouched by the update
    torch.testing.assert_close(weight.grad, inputs.sum(0, keepdim=True).T.expand(6, 8))


def test_state_requiring_grad_is_refused():
    features, labels, mean, std, seen, m, v = stats_args("cpu")
    mean.requires_grad_(True)
    with pytest.raises(RuntimeError, match="mean: .*must not require grad"):
        segmented_stats_update_(features, labels, mean, std, seen, m, v)


def test_gradient_through_fisher_distance_fails_clearly():
    mean = torch.randn(4, 3, requires_grad=True)
    std = torch.rand(4, 3) + 0.1
    out = fisher_distance(mean, std)
    with pytest.raises(RuntimeError, match="fasa_fast::fisher_distance is not differentiable"):
        out.sum().backward()


def test_compiles_fullgraph():
    def step(features, labels, mean, std, seen):
        segmented_stats_update_(features, labels, mean, std, seen, 0.1, False)
        return fisher_distance(mean, std)

    args = stats_args("cpu")[:5]
    eager_state = [a.clone() for a in args[2:]]
    expected = step(args[0], args[1], *eager_state)
    compiled = torch.compile(step, fullgraph=True, backend="aot_eager")
    got = compiled(*args)
    torch.testing.assert_close(got, expected)
    for a, b in zip(args[2:], eager_state, strict=True):
        torch.testing.assert_close(a, b)


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


def test_direct_op_call_is_checked_by_the_kernel():
    # Bypassing the wrapper must still never read out of bounds.
    if not fasa_fast.extension_loaded():
        pytest.skip("the extension's own checks are under test")
    features, labels, mean, std, seen, m, v = stats_args("cpu")
    with pytest.raises(RuntimeError, match="seen"):
        torch.ops.fasa_fast.segmented_stats_update_(features, labels, mean, std, seen[:2], m, v)
