"""Per-op benchmarks: every backend that runs here against the baselines, LVIS shapes."""

from __future__ import annotations

import pytest
import torch

from benchmarks.baselines import (
    fisher_distance_chunked,
    stats_update_per_class_loop,
    stats_update_vectorised,
)
from fasa_fast.ops import (
    _library,
    fisher_distance,
    make_rng_state,
    sample_virtual_features,
    segmented_stats_update_,
)
from tests.cases import fresh_state, lvis_batch

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


# Triton on the CPU is the interpreter: a correctness tool, not a timing
CASES = [
    (d, b)
    for d in DEVICES
    for b in _library.available_backends(d)
    if not (d == "cpu" and b == "triton")
]


def sync(device):
    if device == "cuda":
        torch.cuda.synchronize()


@pytest.mark.parametrize(("device", "backend"), CASES, ids=[f"{d}-{b}" for d, b in CASES])
def test_stats_update(run, benchmark, shape, instance_counts, device, backend):
    features, labels = lvis_batch(shape, instance_counts, device)
    state = fresh_state(shape.num_classes, shape.dim, device)
    segmented_stats_update_(features, labels, *state)  # first sighting done: measure momentum steps

    def step():
        segmented_stats_update_(features, labels, *state)
        sync(device)

    present = int(labels[labels < shape.num_classes].unique().numel())
    positives = int((labels < shape.num_classes).sum())
    bytes_moved = labels.numel() * 8 + positives * shape.dim * 4 + 4 * present * shape.dim * 4
    benchmark.extra_info.update(
        shape=vars(shape), device=device, backend=backend, bytes=bytes_moved
    )
    with _library.use_backend(device, backend):
        run(step)


@pytest.mark.parametrize(
    "baseline", [stats_update_per_class_loop, stats_update_vectorised], ids=["loop", "vectorised"]
)
@pytest.mark.parametrize("device", DEVICES)
def test_stats_update_baseline(run, benchmark, shape, instance_counts, device, baseline):
    features, labels = lvis_batch(shape, instance_counts, device)
    state = fresh_state(shape.num_classes, shape.dim, device)
    baseline(features, labels, *state)

    def step():
        baseline(features, labels, *state)
        sync(device)

    benchmark.extra_info.update(shape=vars(shape), device=device, backend=baseline.__name__)
    run(step)


@pytest.mark.parametrize(("device", "backend"), CASES, ids=[f"{d}-{b}" for d, b in CASES])
def test_fisher_distance(run, benchmark, shape, device, backend):
    mean = torch.randn(shape.num_classes, shape.dim, device=device)
    std = torch.rand(shape.num_classes, shape.dim, device=device) + 0.1
    bytes_moved = 2 * shape.num_classes * shape.dim * 4 + shape.num_classes**2 * 4
    benchmark.extra_info.update(
        shape=vars(shape), device=device, backend=backend, bytes=bytes_moved
    )
    with _library.use_backend(device, backend):
        out = run(lambda: (fisher_distance(mean, std), sync(device))[0])
    assert out.shape == (shape.num_classes, shape.num_classes)


@pytest.mark.parametrize("device", DEVICES)
def test_fisher_distance_baseline(run, benchmark, shape, device):
    mean = torch.randn(shape.num_classes, shape.dim, device=device)
    std = torch.rand(shape.num_classes, shape.dim, device=device) + 0.1
    benchmark.extra_info.update(shape=vars(shape), device=device, backend="chunked torch")
    run(lambda: (fisher_distance_chunked(mean, std), sync(device))[0])


@pytest.mark.parametrize(("device", "backend"), CASES, ids=[f"{d}-{b}" for d, b in CASES])
def test_sample_virtual_features(run, benchmark, shape, instance_counts, device, backend):
    mean = torch.randn(shape.num_classes, shape.dim, device=device)
    std = torch.rand(shape.num_classes, shape.dim, device=device)
    seen = torch.ones(shape.num_classes, dtype=torch.long, device=device)
    inverse = 1.0 / instance_counts
    prob = (inverse / inverse.sum()).float().to(device)  # Eq. 4 with s = 1 (LVIS: ~1 per step)
    rng = make_rng_state(0, device)
    bytes_moved = shape.num_classes * (4 + 8) + 64 * (shape.dim * 4 + 8)  # prob, seen; the output
    benchmark.extra_info.update(
        shape=vars(shape), device=device, backend=backend, capacity=64, bytes=bytes_moved
    )
    with _library.use_backend(device, backend):
        run(lambda: (sample_virtual_features(mean, std, seen, prob, rng, 1, 64), sync(device))[0])


@pytest.mark.parametrize("device", DEVICES)
def test_per_class_loss_accumulation_plain_torch(run, benchmark, shape, instance_counts, device):
    """The adaptation pass sums per-RoI losses per class: plain torch (two index_add_ into
    [C + 1] buffers) is already a single small kernel each, so it gets no custom op."""
    _, labels = lvis_batch(shape, instance_counts, device)
    losses = torch.rand(shape.rois, device=device)
    loss_sum = torch.zeros(shape.num_classes + 1, dtype=torch.float64, device=device)
    loss_count = torch.zeros(shape.num_classes + 1, dtype=torch.float64, device=device)

    def accumulate():
        loss_sum.index_add_(0, labels, losses.double())
        loss_count.index_add_(0, labels, torch.ones_like(losses, dtype=torch.float64))
        sync(device)

    benchmark.extra_info.update(shape=vars(shape), device=device, backend="torch index_add_")
    run(accumulate)


SWEEP = [  # (rois N, feature dim D, classes C) around LVIS's (1024, 1024, 1203)
    (256, 1024, 1203),
    (4096, 1024, 1203),
    (1024, 256, 1203),
    (1024, 2048, 1203),
    (1024, 1024, 300),
    (1024, 1024, 4800),
]


@pytest.mark.parametrize(("device", "backend"), CASES, ids=[f"{d}-{b}" for d, b in CASES])
@pytest.mark.parametrize("sweep", SWEEP, ids=[f"N{n}-D{d}-C{c}" for n, d, c in SWEEP])
def test_stats_update_scaling(run, benchmark, quick, instance_counts, device, backend, sweep):
    if backend == "reference" and not quick:
        pytest.skip("the float64 reference is the specification, not a scaling target")
    from benchmarks.conftest import Shape

    n, d, c = (64, 32, 40) if quick else sweep
    shape = Shape(c, d, n, n // 4)
    counts = instance_counts.repeat((c + len(instance_counts) - 1) // len(instance_counts))[:c]
    features, labels = lvis_batch(shape, counts, device)
    state = fresh_state(shape.num_classes, shape.dim, device)
    segmented_stats_update_(features, labels, *state)

    def step():
        segmented_stats_update_(features, labels, *state)
        sync(device)

    benchmark.extra_info.update(
        shape=vars(shape), device=device, backend=backend, sweep="stats_update"
    )
    with _library.use_backend(device, backend):
        run(step)


@pytest.mark.parametrize(("device", "backend"), CASES, ids=[f"{d}-{b}" for d, b in CASES])
@pytest.mark.parametrize(
    "sweep",
    [(300, 1024), (1203, 256), (1203, 2048)],
    ids=["C300-D1024", "C1203-D256", "C1203-D2048"],
)
def test_fisher_distance_scaling(run, benchmark, quick, device, backend, sweep):
    if backend == "reference" and not quick:
        pytest.skip("the float64 reference is the specification, not a scaling target")
    c, d = (20, 16) if quick else sweep
    mean = torch.randn(c, d, device=device)
    std = torch.rand(c, d, device=device) + 0.1
    benchmark.extra_info.update(
        shape={"num_classes": c, "dim": d}, device=device, backend=backend, sweep="fisher"
    )
    with _library.use_backend(device, backend):
        run(lambda: (fisher_distance(mean, std), sync(device))[0])


@pytest.mark.parametrize("device", DEVICES)
def test_memory_bandwidth(run, benchmark, quick, device):
    """A large device copy: the bandwidth the ops' memory floors are computed with."""
    n = (1 << 20) if quick else (1 << 26)  # 256 MiB of float32 in full mode
    src = torch.ones(n, device=device)
    dst = torch.empty_like(src)
    benchmark.extra_info.update(device=device, bytes=2 * n * 4, bandwidth_probe=True)
    run(lambda: (dst.copy_(src), sync(device)))


@pytest.mark.parametrize("device", [d for d in DEVICES if d == "cuda"])
def test_launch_latency(run, benchmark, device):
    """One tiny kernel launch and its completion: the latency floor of a GPU op."""
    x = torch.zeros(1, device=device)
    benchmark.extra_info.update(device=device, latency_probe=True)
    run(lambda: (x.add_(1), sync(device)))
