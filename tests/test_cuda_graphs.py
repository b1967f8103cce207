"""On a GPU: a FASA training step makes no host-device synchronisation and can be captured in a
CUDA graph whose replays match eager steps. Skipped without a GPU (run by scripts/gpu_check.sh)."""

from __future__ import annotations

import pytest
import torch

from fasa_fast import FASA

pytestmark = pytest.mark.cuda


def engine_and_head(device="cuda"):
    counts = torch.randint(1, 1000, (1203,))
    fasa = FASA(1203, 1024, counts, warmup_epochs=0, seed=3).to(device)
    fc = torch.nn.Linear(1024, 1204).to(device)
    return fasa, fc


def step(fasa, fc, features, labels):
    fasa.update(features, labels)
    return fasa.virtual_loss(fc)


@pytest.mark.parametrize("backend", ["native", "triton", "reference"])
def test_training_step_never_syncs(backend):
    from fasa_fast.ops import _library

    if backend == "native" and not _library.native_available("cuda"):
        pytest.skip("extension built without CUDA kernels")
    fasa, fc = engine_and_head()
    features = torch.randn(1024, 1024, device="cuda", requires_grad=True)
    labels = torch.randint(0, 1204, (1024,), device="cuda")
    with _library.use_backend("cuda", backend):
        step(fasa, fc, features, labels).backward()  # warm-up: lazy inits may sync once
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")
        try:
            step(fasa, fc, features, labels).backward()
        finally:
            torch.cuda.set_sync_debug_mode("default")


@pytest.mark.parametrize("backend", ["native", "triton", "reference"])
def test_training_step_is_graph_capturable(backend):
    from fasa_fast.ops import _library

    if backend == "native" and not _library.native_available("cuda"):
        pytest.skip("extension built without CUDA kernels")
    with _library.use_backend("cuda", backend):
        capture_and_replay()


def capture_and_replay():
    fasa, fc = engine_and_head()
    features = torch.randn(1024, 1024, device="cuda")
    labels = torch.randint(0, 1204, (1024,), device="cuda")
    labels[:8] = torch.arange(8, device="cuda")
    features[:3, 5] = float("nan")  # foreground rows the op skips and counts on every replay
    eager, eager_fc = engine_and_head()
    eager.load_state_dict(fasa.state_dict())
    eager_fc.load_state_dict(fc.state_dict())
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):  # warm up outside the graph, as capture requires
        for _ in range(2):
            step(fasa, fc, features, labels)
            step(eager, eager_fc, features, labels)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        loss = step(fasa, fc, features, labels)
    for _ in range(3):
        graph.replay()
        expected = step(eager, eager_fc, features, labels)
        torch.cuda.synchronize()
        torch.testing.assert_close(loss, expected)
        torch.testing.assert_close(fasa.mean, eager.mean)
        assert torch.equal(fasa.rng_state, eager.rng_state)
        assert torch.equal(fasa.skipped_rows, eager.skipped_rows)
    assert fasa.skipped_rows[0] == 3 * 5, "3 non-finite rows per step: 2 warm-up steps, 3 replays"
