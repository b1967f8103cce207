"""A long soak of the engine against the float64 replay (``tests/oracle.py::EngineReplay``):
thousands of steps of varied batches (random class mixes, empty batches, all-background
batches, single-class batches, rare classes), adaptation every few hundred steps. The running
statistics must not drift from the float64 replay, nothing may turn NaN, the draws and the
probabilities must stay exactly the replay's, and the process must not grow."""

from __future__ import annotations

import os

import pytest
import torch
from torch import nn

from fasa_fast import FASA
from tests.oracle import EngineReplay

NUM_CLASSES, DIM = 9, 6
STEPS, ADAPT_EVERY, CHECK_EVERY = 3000, 300, 250


def batch(step: int, gen: torch.Generator, centres: torch.Tensor):
    """The step's features and labels; the kind of batch cycles through the hard cases."""
    kind = step % 7
    if kind == 0:  # empty
        labels = torch.zeros(0, dtype=torch.long)
    elif kind == 1:  # background only
        labels = torch.full((16,), NUM_CLASSES)
    elif kind == 2:  # a single class, one row (the std then keeps its value)
        labels = torch.randint(0, NUM_CLASSES, (1,), generator=gen)
    elif kind == 3:  # a single class, many rows
        labels = torch.randint(0, NUM_CLASSES, (1,), generator=gen).repeat(12)
    else:  # a mix with background and ignore labels, the last classes rare
        weights = torch.tensor([8.0, 8, 6, 6, 4, 2, 1, 0.5, 0.2, 10, 1])  # C classes, bg, -1
        labels = torch.multinomial(weights, 24, replacement=True, generator=gen)
        labels[labels == NUM_CLASSES + 1] = -1
    features = centres[labels.clamp(0, NUM_CLASSES - 1)]
    features = features + torch.randn(labels.shape[0], DIM, generator=gen) * 0.7
    return features, labels


def rss_mb() -> float:
    """The process's resident memory now (not its peak), MB."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


@pytest.mark.slow
def test_thousands_of_steps_stay_with_the_float64_replay():
    options = dict(momentum=0.1, loss_weight=0.5, k=2, capacity=12, warmup_epochs=1, seed=4)
    counts = [900, 700, 400, 300, 120, 40, 9, 3, 1]
    fasa = FASA(NUM_CLASSES, DIM, counts, **options)
    replay = EngineReplay(NUM_CLASSES, DIM, counts, **options)
    classifier = nn.Linear(DIM, NUM_CLASSES + 1)
    gen = torch.Generator().manual_seed(17)
    centres = torch.randn(NUM_CLASSES, DIM, generator=gen) * 3
    epoch, adaptations, worst, rss_after_warmup = 0, 0, 0.0, None
    fasa.start_epoch(epoch)
    for step in range(STEPS):
        if step and step % ADAPT_EVERY == 0:  # an "epoch" ends: adapt, then the next starts
            labels = torch.randint(0, NUM_CLASSES, (30,), generator=gen)
            losses = torch.rand(30, generator=gen) * 2
            if fasa.augmenting:
                fasa.accumulate_adaptation_loss(labels, losses=losses)
                replay.accumulate(labels, losses)
                fasa.adapt()
                replay.adapt(fasa.groups.tolist())  # grouping has its own tests
                adaptations += 1
                assert fasa.prob.double().tolist() == replay.prob, f"prob after step {step}"
            epoch += 1
            fasa.start_epoch(epoch)
            replay.epoch = epoch
        features, labels = batch(step, gen, centres)
        fasa.update(features, labels)
        replay.update(features, labels)
        loss = fasa.virtual_loss(classifier)
        expected = replay.virtual_loss(classifier.weight, classifier.bias)
        assert torch.isfinite(loss), f"step {step}: virtual loss {loss}"
        assert loss.item() == pytest.approx(expected, rel=1e-4, abs=1e-6), f"step {step}"
        if step % CHECK_EVERY == CHECK_EVERY - 1:
            assert fasa.seen.tolist() == replay.seen.tolist(), f"seen at step {step}"
            for name, got, want in (
                ("mean", fasa.mean, replay.mean),
                ("std", fasa.std, replay.std),
            ):
                assert torch.isfinite(got).all(), f"{name} at step {step}"
                worst = max(worst, (got.double() - want).abs().max().item())
                torch.testing.assert_close(got.double(), want, atol=2e-5, rtol=2e-5)
            assert int(fasa.rng_state[1]) == replay.call
        if step == 1000:  # after the first adaptations (their imports and first allocations)
            rss_after_warmup = rss_mb()
    assert adaptations >= 8 and replay.call > 2000
    grown = rss_mb() - rss_after_warmup
    assert grown < 16, f"memory grew by {grown:.1f} MB over the last {STEPS - 1000} steps"
    print(f"\nsoak: {STEPS} steps, {adaptations} adaptations, worst |stat - float64| = {worst:.2e}, "
          f"memory {grown:+.1f} MB")  # fmt: skip
