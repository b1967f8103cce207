"""The FASA training step (``update`` + ``virtual_loss``, then ``backward``) under
``torch.compile(fullgraph=True)`` on the CPU, every backend: traced without a graph break, and
step for step equal to the eager engine (statistics, counters, random state, loss, gradients),
non-finite rows counted as in eager mode."""

from __future__ import annotations

import copy

import pytest
import torch

from fasa_fast import FASA
from fasa_fast.ops import _library

CPU_BACKENDS = [p for p in _library.BACKENDS if p in _library.available_backends("cpu")]
C, D, N = 12, 16, 40


def engine_and_classifier():
    fasa = FASA(C, D, torch.arange(1, C + 1), warmup_epochs=0, seed=5)
    fasa.prob.fill_(0.5)
    fc = torch.nn.Linear(D, C + 1)
    return fasa, fc


def batch(step: int):
    gen = torch.Generator().manual_seed(step)
    features = torch.randn(N, D, generator=gen) + step
    labels = torch.randint(-1, C + 2, (N,), generator=gen)
    features[3, 2] = float("nan")  # counted in skipped_rows[0] when label 3 is foreground
    features[7, 0] = float("inf")
    return features, labels


def step(fasa, fc, features, labels):
    fasa.update(features, labels)
    return fasa.virtual_loss(fc)


@pytest.mark.parametrize("compiler", ["aot_eager", "inductor"])
@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_step_compiles_in_one_graph_and_matches_eager(backend, compiler):
    if compiler == "inductor" and backend != CPU_BACKENDS[0]:
        pytest.skip("inductor once, on the default CPU backend (its C++ build is slow)")
    torch._dynamo.reset()
    fasa, fc = engine_and_classifier()
    eager, eager_fc = copy.deepcopy(fasa), copy.deepcopy(fc)
    compiled = torch.compile(step, fullgraph=True, backend=compiler)  # a graph break raises
    with _library.use_backend("cpu", backend):
        for i in range(3):
            features, labels = batch(i)
            fc.zero_grad(set_to_none=True)
            eager_fc.zero_grad(set_to_none=True)
            loss = compiled(fasa, fc, features, labels)
            loss.backward()
            expected = step(eager, eager_fc, features, labels)
            expected.backward()
            torch.testing.assert_close(loss, expected)
            for name in ("mean", "std"):
                torch.testing.assert_close(getattr(fasa, name), getattr(eager, name))
            for name in ("seen", "rng_state", "skipped_rows"):
                assert torch.equal(getattr(fasa, name), getattr(eager, name)), name
            torch.testing.assert_close(fc.weight.grad, eager_fc.weight.grad)
            torch.testing.assert_close(fc.bias.grad, eager_fc.bias.grad)
    assert fasa.rng_state[1] == 3, "one draw per step"
    assert fasa.skipped_rows[0] > 0, "the batches hold non-finite foreground rows"
    assert loss.item() > 0, "virtual rows were drawn"
