"""``tools/train.py --amp`` with the FASA box head: mmengine's ``AmpOptimWrapper`` (autocast and
its loss scaler) around a Mask R-CNN whose box head is FASA's, ``FASAHook`` adapting, 2 epochs
on a toy LVIS set, next to the same run without ``--amp``.

mmengine builds ``AmpOptimWrapper`` only where a GPU (or NPU, MLU, MUSA) is, and autocasts on
the CPU to bf16 only; mmcv's CPU ``nms`` and ``roi_align`` take fp32 only (their CUDA kernels
take fp16 and bf16). With CUDA the test runs as a user's run does, fp16 and bf16. Without, it
runs bf16 on the CPU through two stand-ins, both outside FASA and outside the code under test:
mmengine's device check answers yes, and mmcv's two CPU kernels compute in fp32 what autocast
hands them in bf16 and write their outputs back in bf16.
"""

from __future__ import annotations

import sys

import pytest
import torch
from mmengine.hooks import Hook

from fasa_fast import FASA
from fasa_fast.mmdet.toy_lvis import make_toy_lvis
from tests.mmdet.helpers import NUM_CLASSES, load_tool, probed_runners, runner_config
from tests.oracle import stats_update_oracle

CUDA = torch.cuda.is_available()


class RunProbe(Hook):
    """The optimizer wrapper, each step's losses and the final FASA state of one run."""

    priority = "LOWEST"

    def __init__(self) -> None:
        self.losses = []

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        self.losses.append({k: float(v.detach()) for k, v in outputs.items()})

    def after_train(self, runner) -> None:
        self.wrapper = runner.optim_wrapper
        fasa = runner.model.roi_head.bbox_head.fasa
        self.fasa = {k: v.clone() for k, v in fasa.state_dict().items() if torch.is_tensor(v)}
        self.momentum, self.momentum_on_var = fasa.momentum, fasa.momentum_on_var


def fp32_kernel(kernel):
    """mmcv's CPU ``kernel`` on bf16 tensors: computed on fp32 copies; the copies the kernel
    wrote to are written back (only those: a write to an input would break its autograd)."""

    def call(*args, **kwargs):
        copies = []

        def widen(value):
            if torch.is_tensor(value) and value.dtype == torch.bfloat16:
                copies.append((value, value.float()))
                return copies[-1][1]
            return value

        out = kernel(*[widen(a) for a in args], **{k: widen(v) for k, v in kwargs.items()})
        for tensor, copy in copies:
            if not torch.equal(tensor.float(), copy):
                tensor.copy_(copy)
        return out

    return call


def cpu_amp_stand_ins(monkeypatch) -> None:
    from mmengine.optim.optimizer import amp_optimizer_wrapper

    from fasa_fast.mmdet import cli

    monkeypatch.setattr(amp_optimizer_wrapper, "is_cuda_available", lambda: True)
    monkeypatch.setattr(cli, "amp_device_available", lambda: True)
    import mmcv.ops  # noqa: F401  (loads mmcv._ext)

    ext = sys.modules["mmcv.ops.nms"].ext_module
    for name in ("nms", "roi_align_forward", "roi_align_backward"):
        monkeypatch.setattr(ext, name, fp32_kernel(getattr(ext, name)))


@pytest.fixture(scope="module")
def config(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("amp")
    toy = tmp / "toy"
    make_toy_lvis(toy, num_classes=NUM_CLASSES, num_train=14, num_val=4, image_size=96, seed=0)
    cfg = runner_config(
        tmp, toy, toy / "annotations" / "lvis_v1_train.json", max_epochs=2, warmup_epochs=0,
        held_out=0.3,
    )  # fmt: skip
    cfg.custom_imports = dict(imports=["fasa_fast.mmdet"], allow_failed_imports=False)
    path = tmp / "config.py"
    cfg.dump(str(path))
    return path


def autocast_enabled(device_type: str) -> bool:
    """torch >= 2.4 takes the device type; torch 2.1 has one query per device type."""
    try:
        return torch.is_autocast_enabled(device_type)
    except TypeError:
        if device_type == "cpu":
            return torch.is_autocast_cpu_enabled()
        return torch.is_autocast_enabled()


def train(config, work, *args):
    """One ``tools/train.py`` run; returns its probe and what each ``FASA.update`` received."""
    received = []
    update = FASA.update

    def recording_update(self, features, labels):
        on = autocast_enabled(features.device.type)
        received.append((features.detach().clone(), labels.clone(), on))
        return update(self, features, labels)

    with pytest.MonkeyPatch.context() as monkeypatch:
        if "--amp" in args and not CUDA:
            cpu_amp_stand_ins(monkeypatch)
        monkeypatch.setattr(FASA, "update", recording_update)
        tool = load_tool("train")
        probes = probed_runners(monkeypatch, tool, RunProbe)
        tool.main([str(config), "--work-dir", str(work), *args])
    return probes[0], received


@pytest.fixture(scope="module")
def fp32_run(config, tmp_path_factory):
    return train(config, tmp_path_factory.mktemp("fp32"))


DTYPES = ["float16", "bfloat16"] if CUDA else ["bfloat16"]


@pytest.fixture(scope="module", params=DTYPES)
def amp_run(request, config, tmp_path_factory):
    work = tmp_path_factory.mktemp(f"amp_{request.param}")
    probe, received = train(
        config, work, "--amp", "--cfg-options", f"optim_wrapper.dtype={request.param}"
    )
    return getattr(torch, request.param), probe, received, work


@pytest.mark.slow
def test_amp_run_autocasts_the_fasa_head_and_keeps_fp32_statistics_equal_to_a_float64_replay(
    amp_run,
):
    from mmengine.optim import AmpOptimWrapper

    dtype, probe, received, work = amp_run
    assert isinstance(probe.wrapper, AmpOptimWrapper) and probe.wrapper.cast_dtype == dtype
    # the head's classification features reached FASA in the autocast dtype, inside autocast
    assert received and all(f.dtype == dtype and on for f, _, on in received)
    # every step of both epochs trained with finite losses, FASA's virtual loss among them
    assert all(torch.isfinite(torch.tensor(list(step.values()))).all() for step in probe.losses)
    assert any(step["loss_cls_fasa"] > 0 for step in probe.losses)
    # the statistics stay fp32 and equal a float64 replay of exactly those reduced-precision rows
    state = probe.fasa
    assert state["mean"].dtype == torch.float32 and state["std"].dtype == torch.float32
    mean = torch.zeros_like(state["mean"], dtype=torch.float64)
    std, seen = mean.clone(), torch.zeros_like(state["seen"])
    for features, labels, _ in received:
        mean, std, seen = stats_update_oracle(
            features, labels, mean, std, seen, probe.momentum, probe.momentum_on_var
        )
    assert torch.equal(state["seen"].cpu(), seen) and seen.sum() > 0
    torch.testing.assert_close(state["mean"].double().cpu(), mean, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(state["std"].double().cpu(), std, rtol=1e-5, atol=1e-5)
    # the checkpoint holds them in fp32 too
    saved = torch.load(work / "epoch_2.pth", map_location="cpu", weights_only=False)["state_dict"]
    assert saved["roi_head.bbox_head.fasa.mean"].dtype == torch.float32
    assert torch.equal(saved["roi_head.bbox_head.fasa.mean"], state["mean"].cpu())


@pytest.mark.slow
def test_amp_run_starts_where_the_fp32_run_starts(amp_run, fp32_run):
    dtype, probe, received, _ = amp_run
    reference, reference_received = fp32_run
    assert all(f.dtype == torch.float32 and not on for f, _, on in reference_received)
    assert len(probe.losses) == len(reference.losses) > 0
    # the first step: the same weights and images, only the precision differs (box and mask
    # losses are left out: their targets are cut by proposals whose coordinates autocast has
    # rounded, 0.5 px steps at 96 px in bf16)
    first, first_reference = probe.losses[0], reference.losses[0]
    for key in ("loss_rpn_cls", "loss_cls"):
        assert first[key] == pytest.approx(first_reference[key], rel=2e-2), (key, first)
    # FASA's first virtual loss: the same classes drawn (same counter, same probabilities, the
    # same classes seen), features and classifier a few reduced-precision steps apart
    step = next(i for i, s in enumerate(reference.losses) if s["loss_cls_fasa"] > 0)
    assert probe.losses[step]["loss_cls_fasa"] == pytest.approx(
        reference.losses[step]["loss_cls_fasa"], rel=5e-2
    ), (step, probe.losses[step], reference.losses[step])


@pytest.mark.skipif(CUDA, reason="the error is for machines without a GPU")
def test_amp_without_an_accelerator_stops_before_anything_is_built(config, monkeypatch):
    from mmengine.runner import Runner

    built = []
    monkeypatch.setattr(Runner, "from_cfg", classmethod(lambda cls, cfg: built.append(cfg)))
    tool = load_tool("train")
    with pytest.raises(SystemExit, match=r"--amp: .*AmpOptimWrapper.* GPU.*without --amp"):
        tool.main([str(config), "--amp"])
    assert not built
