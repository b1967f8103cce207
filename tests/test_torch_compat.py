"""The registration paths for torch releases without ``register_fake`` / ``register_autograd``
(< 2.4) or ``Library._destroy`` (< 2.2), and the paths for newer ones: which one ran, and that
the op behaves the same through it."""

from __future__ import annotations

import pytest
import torch

import fasa_fast
from fasa_fast.ops import _library, fisher_distance

RELEASE = tuple(int(p) for p in torch.__version__.split("+")[0].split(".")[:2])


def cpu_kernel_line(name: str) -> str:
    dump = torch._C._dispatch_dump(f"fasa_fast::{name}")
    return next(line for line in dump.splitlines() if line.startswith("CPU:"))


def test_the_registration_api_follows_the_torch_release():
    assert _library.HAS_REGISTER_FAKE == (RELEASE >= (2, 4))
    assert _library.HAS_REGISTER_AUTOGRAD == (RELEASE >= (2, 4))


def test_fake_kernel_gives_shapes_without_data():
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode():
        mean, std = torch.empty(5, 3), torch.empty(5, 3)
        out = torch.ops.fasa_fast.fisher_distance(mean, std, 1e-6)
    assert out.shape == (5, 5) and out.dtype == torch.float32


def test_autograd_rule_refuses_the_backward_and_keeps_the_forward():
    mean = torch.randn(4, 3, requires_grad=True)
    std = torch.rand(4, 3) + 0.1
    out = fisher_distance(mean, std)
    assert out.requires_grad and out.grad_fn is not None
    torch.testing.assert_close(out, fisher_distance(mean.detach(), std))
    with pytest.raises(RuntimeError, match="fasa_fast::fisher_distance is not differentiable"):
        out.sum().backward()


def test_switch_unregisters_a_library_someone_still_holds():
    # the kernels must go when the policy drops a library, not when the last reference does
    if not fasa_fast.extension_loaded():
        pytest.skip("needs the compiled CPU kernels to switch back to")
    with _library.use_backend("cpu", "reference"):
        held = _library._python_registered["cpu"]
        assert "csrc/" not in cpu_kernel_line("fisher_distance")
        _library.set_backend("cpu", "native")
        assert "csrc/" in cpu_kernel_line("fisher_distance"), cpu_kernel_line("fisher_distance")
        _library.set_backend("cpu", "reference")  # the same key again: not refused as taken
        assert "csrc/" not in cpu_kernel_line("fisher_distance")
    assert held is not None
