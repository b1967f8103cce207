"""The contract the ops keep together in a training step: autograd safety and torch.compile.
(Each op's own opcheck and bad-input tests live in its test module.)"""

from __future__ import annotations

import pytest
import torch

from fasa_fast.ops import (
    fisher_distance,
    make_rng_state,
    sample_virtual_features,
    segmented_stats_update_,
)
from tests.backends import needs_compile_support
from tests.cases import stats_args


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


@needs_compile_support
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


@needs_compile_support
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
