"""Mixed precision: under autocast (bf16, fp16) the engine keeps fp32 statistics, its virtual loss
stays finite where fp16 logits would overflow, and a run tracks the fp32 run within tolerance."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from fasa_fast import FASA
from tests.backends import need


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


def cpu_autocast_supports(dtype: torch.dtype) -> bool:
    """CPU autocast takes float16 from torch 2.3 on; torch 2.1 refuses it (bfloat16 only)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the refusal is also a warning
        try:
            with torch.autocast("cpu", dtype=dtype):
                return torch.is_autocast_cpu_enabled()
        except RuntimeError:
            return False


FP16_CPU = pytest.mark.skipif(
    not cpu_autocast_supports(torch.float16), reason="this torch's CPU autocast has no float16"
)


@pytest.mark.parametrize(
    "dtype, tol", [(torch.bfloat16, 2e-2), pytest.param(torch.float16, 4e-3, marks=FP16_CPU)]
)
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


def train_with_optim_wrapper(dtype: str | None, device: str, steps: int = 20):
    """A tiny classifier trained with FASA through mmengine's optimizer wrappers: ``dtype`` None
    is the fp32 ``OptimWrapper``, else ``AmpOptimWrapper`` (autocast + dynamic loss scaling)."""
    from mmengine.optim import AmpOptimWrapper, OptimWrapper

    torch.manual_seed(0)
    backbone = nn.Sequential(nn.Linear(32, 64), nn.ReLU()).to(device)
    classifier = nn.Linear(64, 9).to(device)  # 8 classes + background
    model = nn.ModuleList([backbone, classifier])
    fasa = FASA(8, 64, [400, 200, 100, 50, 20, 10, 5, 1], warmup_epochs=0, capacity=32)
    fasa = fasa.to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    if dtype is None:
        wrapper = OptimWrapper(optimizer=optimizer)
    else:
        wrapper = AmpOptimWrapper(optimizer=optimizer, dtype=dtype)
    losses, virtual = [], []
    for step in range(steps):
        g = torch.Generator().manual_seed(step)
        x = (torch.randn(64, 32, generator=g) + 1.0).to(device)
        y = torch.randint(0, 9, (64,), generator=g).to(device)
        with wrapper.optim_context(model):
            features = backbone(x)
            fasa.update(features.detach(), y)
            loss_virtual = fasa.virtual_loss(classifier)
            loss = nn.functional.cross_entropy(classifier(features).float(), y) + loss_virtual
        wrapper.update_params(loss)
        losses.append(loss.detach().float())
        virtual.append(loss_virtual.detach())
    return fasa, model, torch.stack(losses), torch.stack(virtual), wrapper


@pytest.mark.cuda
@pytest.mark.parametrize("dtype, tol", [("float16", 2e-2), ("bfloat16", 8e-2)])
def test_mmengine_amp_optim_wrapper_trains_like_fp32(dtype, tol):
    # mmengine's AmpOptimWrapper refuses to start without a GPU (or NPU, MLU, MUSA)
    need("mmengine")
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device (AmpOptimWrapper)")
    ref_fasa, ref_model, ref_losses, _, _ = train_with_optim_wrapper(None, "cuda")
    fasa, model, losses, virtual, wrapper = train_with_optim_wrapper(dtype, "cuda")
    # the statistics stay fp32 and follow the fp32 run; the virtual loss is an fp32 scalar
    assert fasa.mean.dtype == torch.float32 and fasa.std.dtype == torch.float32
    assert torch.equal(fasa.seen, ref_fasa.seen)
    torch.testing.assert_close(fasa.mean, ref_fasa.mean, rtol=tol, atol=tol)
    torch.testing.assert_close(fasa.std, ref_fasa.std, rtol=tol, atol=tol)
    assert virtual.dtype == torch.float32 and (virtual > 0).any()
    # every step was taken (no overflow skipped one) and the run tracks the fp32 run
    assert torch.isfinite(losses).all()
    scale = wrapper.loss_scaler.get_scale()
    assert scale == 2.0**16, f"a step overflowed: the loss scale fell to {scale}"
    torch.testing.assert_close(losses, ref_losses, rtol=tol, atol=tol)
    for p, q in zip(model.parameters(), ref_model.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=tol, atol=tol)
