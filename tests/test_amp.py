"""Mixed precision: under autocast (bf16, fp16) the engine keeps fp32 statistics, its virtual loss
stays finite where fp16 logits would overflow, and a run tracks the fp32 run within tolerance."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from fasa_fast import FASA


def run(dtype: torch.dtype | None, steps: int = 5):
    torch.manual_seed(0)
    fasa = FASA(5, 16, [50, 20, 10, 5, 1], warmup_epochs=0, capacity=16)
    classifier = nn.Linear(16, 6)
    fasa.prob.fill_(1.0)
    losses = []
    for step in range(steps):
        g = torch.Generator().manual_seed(step)
        features = torch.randn(32, 16, generator=g) + 2.0
        labels = torch.randint(0, 6, (32,), generator=g)
        with torch.autocast("cpu", dtype=dtype or torch.bfloat16, enabled=dtype is not None):
            cast = features.to(dtype) if dtype is not None else features
            fasa.update(cast, labels)
            losses.append(fasa.virtual_loss(classifier))
    return fasa, torch.stack(losses)


@pytest.mark.parametrize("dtype, tol", [(torch.bfloat16, 2e-2), (torch.float16, 4e-3)])
def test_autocast_keeps_fp32_statistics_close_to_the_fp32_run(dtype, tol):
    reference, reference_losses = run(None)
    fasa, losses = run(dtype)
    for key in ("mean", "std"):
        assert getattr(fasa, key).dtype == torch.float32
        torch.testing.assert_close(getattr(fasa, key), getattr(reference, key), rtol=tol, atol=tol)
    assert torch.equal(fasa.seen, reference.seen)
    assert losses.dtype == torch.float32 and torch.isfinite(losses).all()
    torch.testing.assert_close(losses, reference_losses, rtol=5 * tol, atol=5 * tol)


def test_virtual_loss_of_large_fp16_per_row_losses_stays_finite():
    fasa = FASA(3, 4, [1, 1, 1], warmup_epochs=0, capacity=24, k=8)
    fasa.update(torch.ones(3, 4), torch.tensor([0, 1, 2]))
    fasa.prob.fill_(1.0)

    def fp16_loss(logits, labels):  # a loss computed in fp16: 5000 per row, 24 rows
        return torch.full(labels.shape, 5000.0, dtype=torch.float16)

    loss = fasa.virtual_loss(lambda x: x, fp16_loss)
    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx(0.1 * 5000.0)  # the mean over 24 valid rows, weighted
