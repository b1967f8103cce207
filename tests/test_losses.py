"""``fasa_fast.losses``: each per-row loss against a float64 loop (``tests/oracle.py``)."""

from __future__ import annotations

import pytest
import torch

from fasa_fast import losses
from tests.oracle import one_hot_bce_row_loss, seesaw_row_loss, softmax_ce_row_loss


def rows(num_rows, width, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(num_rows, width, generator=gen, dtype=torch.float64) * 4


def test_softmax_ce_per_row():
    logits, labels = rows(9, 6), torch.tensor([0, 5, 2, 3, 3, 1, 4, 0, 5])
    got = losses.softmax_ce(logits.float(), labels)
    want = [softmax_ce_row_loss(logits[i], int(labels[i])) for i in range(9)]
    assert got.dtype == torch.float32 and got.shape == (9,)
    torch.testing.assert_close(
        got.double(), torch.tensor(want, dtype=torch.float64), rtol=1e-5, atol=1e-5
    )


def test_one_hot_bce_per_row():
    logits, labels = rows(7, 5, seed=1), torch.tensor([4, 0, 1, 1, 2, 3, 0])
    got = losses.one_hot_bce(logits.float(), labels)
    want = [one_hot_bce_row_loss(logits[i], int(labels[i])) for i in range(7)]
    torch.testing.assert_close(
        got.double(), torch.tensor(want, dtype=torch.float64), rtol=1e-5, atol=1e-5
    )


@pytest.mark.parametrize("p, q", [(0.8, 2.0), (0.0, 2.0), (0.8, 0.0), (0.0, 0.0)])
def test_seesaw_positive_per_row(p, q):
    num_classes = 6
    logits = rows(11, num_classes + 2, seed=2)
    labels = torch.tensor([0, 1, 2, 3, 4, 5, 5, 3, 0, 2, 1])
    cum = torch.tensor([0.0, 3.0, 40.0, 500.0, 7.0, 7.0])  # a zero count is clamped to 1
    got = losses.seesaw_positive(
        logits[:, :num_classes].float(), logits[:, num_classes:].float(), labels, cum, p, q, 1e-2
    )
    want = [
        seesaw_row_loss(logits[i, :num_classes], logits[i, num_classes:], int(labels[i]), cum, p, q)
        for i in range(11)
    ]
    torch.testing.assert_close(
        got.double(), torch.tensor(want, dtype=torch.float64), rtol=1e-4, atol=1e-4
    )


def test_losses_of_half_logits_are_float32_and_finite():
    # fp16 logits of this size overflow fp16's exp: the losses compute in float32.
    logits = torch.full((2, 4), 30.0, dtype=torch.float16)
    logits[:, 0] = -30.0
    labels = torch.tensor([0, 0])
    for value in (
        losses.softmax_ce(logits, labels),
        losses.one_hot_bce(logits, labels),
        losses.seesaw_positive(logits[:, :2], logits[:, 2:], labels, torch.ones(2), 0.8, 2.0, 1e-2),
    ):
        assert value.dtype == torch.float32 and torch.isfinite(value).all()
        assert (value > 50).all()


def test_one_hot_bce_accepts_padding_rows():
    # the engine scores its fixed-size buffer, padding (-1) included, and masks afterwards
    logits, labels = rows(4, 5, seed=3), torch.tensor([2, -1, 0, -1])
    got = losses.one_hot_bce(logits.float(), labels)
    assert torch.isfinite(got).all()
    for i in (0, 2):
        assert got[i].item() == pytest.approx(
            one_hot_bce_row_loss(logits[i], int(labels[i])), rel=1e-5
        )


@pytest.mark.parametrize("q", [1.0, 0.5])
def test_seesaw_near_the_factor_thresholds(q):
    # sample ratios and score ratios between 1 and 2, a top class that no row is labelled with
    num_classes = 5
    cum = torch.tensor([25.0, 40.0, 64.0, 30.0, 3.0])  # N_j / N_y = 1.6, 1.28, 1.2, ...
    logits = torch.tensor(
        [[1.0, 1.3, 0.2, 1.1, 0.0, 0.3, -0.2], [0.5, 0.1, 0.9, 0.6, 0.2, -1.0, 0.4]],
        dtype=torch.float64,
    )  # score ratios within (1, 2) for the classes just above each label
    labels = torch.tensor([0, 1])
    got = losses.seesaw_positive(
        logits[:, :num_classes].float(), logits[:, num_classes:].float(), labels, cum, 0.8, q, 1e-2
    )
    want = [
        seesaw_row_loss(
            logits[i, :num_classes], logits[i, num_classes:], int(labels[i]), cum, 0.8, q
        )
        for i in range(2)
    ]
    torch.testing.assert_close(
        got.double(), torch.tensor(want, dtype=torch.float64), rtol=1e-5, atol=1e-6
    )
