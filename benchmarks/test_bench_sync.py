"""The cost of FASA's statistics sync across ranks (``sync_statistics=True``), next to the
gradient all-reduce it rides along with.

Per step and FASA stage every rank packs its foreground rows into a fixed block of
``sync_capacity`` rows (float32 features, int64 labels) and all-gathers it. The bytes are exact
(they follow from the shapes); the times come from two CPU processes over gloo on this machine,
not from NCCL on GPUs. Each rank times, after a warm-up, ``STEPS`` calls of:

- ``gather``: ``FASA._gather_foreground`` alone (packing + the two all-gathers);
- ``update_synced``: ``FASA.update`` with ``sync_statistics=True`` (gather + update on 2x rows);
- ``update_local``: ``FASA.update`` with ``sync_statistics=False`` (the single-rank update);
- ``gradient_allreduce``: one ``all_reduce`` of the detector's float32 gradients (3 rounds).

Ranks start each timed call together (a barrier before it, outside the timing) and the slower
rank's time counts. The pytest-benchmark stats of this test are the wall time of the whole
two-process run (start-up included): read ``extra_info`` for the numbers. Next to them: the
size of a Mask R-CNN R50-FPN gradient all-reduce at LVIS's 1203 classes (mmdet's
``mask-rcnn_r50_fpn_sample1e-3_ms-1x_lvis-v1`` model, built from its registry without weights;
its 2x schedule trains the same model).

Quick mode: small shapes, a few steps, no LVIS model (checks the code, measures nothing).
"""

from __future__ import annotations

import os
import socket
import statistics
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from tests.gloo import leave_process_group, run_ranks

WORLD = 2
SYNC_CAPACITY = 512
LVIS_CONFIG = "mmdet::lvis/mask-rcnn_r50_fpn_sample1e-3_ms-1x_lvis-v1.py"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def step_rows(shape, probs: torch.Tensor, step: int, rank: int):
    """N RoI features, ``positives`` of them foreground with LVIS-distributed labels."""
    g = torch.Generator().manual_seed(1000 * step + rank)
    features = torch.randn(shape.rois, shape.dim, generator=g)
    labels = torch.full((shape.rois,), shape.num_classes)  # background
    labels[: shape.positives] = torch.multinomial(probs, shape.positives, True, generator=g)
    return features, labels[torch.randperm(shape.rois, generator=g)]


def _timed(fn, rows) -> list[float]:
    times = []
    for features, labels in rows:
        dist.barrier()
        start = time.perf_counter()
        fn(features, labels)
        times.append(time.perf_counter() - start)
    slowest = torch.tensor(times, dtype=torch.float64)
    dist.all_reduce(slowest, op=dist.ReduceOp.MAX)  # the slower rank's time counts
    return slowest.tolist()


def _rank_main(rank, port, shape, counts, capacity, warmup, steps, grad_numel, queue) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    try:
        from fasa_fast import FASA

        counts = torch.tensor(counts, dtype=torch.int64)
        probs = counts.double() / counts.sum()
        rows = [step_rows(shape, probs, s, rank) for s in range(warmup + steps)]
        result = {}
        for variant, sync in (("update_synced", True), ("update_local", False)):
            fasa = FASA(
                shape.num_classes,
                shape.dim,
                counts,
                sync_statistics=sync,
                sync_capacity=capacity,
            )
            for features, labels in rows[:warmup]:
                fasa.update(features, labels)
            result[variant] = _timed(fasa.update, rows[warmup:])
            if sync:
                result["gather"] = _timed(fasa._gather_foreground, rows[warmup:])
                result["overflow_rows"] = int(fasa.skipped_rows[1])
                gathered = fasa._gather_foreground(*rows[0])  # what one step's gather returns
                result["gathered_bytes"] = sum(t.numel() * t.element_size() for t in gathered)
        # the gradient all-reduce of the detector, on the same transport (a few rounds)
        gradient = torch.ones(grad_numel)
        dist.all_reduce(gradient)  # warm-up
        result["gradient_allreduce"] = _timed(
            lambda g, _: dist.all_reduce(g), [(gradient, None)] * (3 if grad_numel > 1e6 else 1)
        )
        queue.put((rank, result))
    finally:
        leave_process_group()


def gradient_parameters(tmp_path) -> dict[str, int]:
    """Parameters of mmdet's LVIS v1 Mask R-CNN R50-FPN (1203 classes), built without weights."""
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    from mmengine.config import Config

    register_all_modules()
    path = tmp_path / "lvis_mask_rcnn.py"
    path.write_text(f"_base_ = {LVIS_CONFIG!r}\n")
    cfg = Config.fromfile(str(path))
    assert cfg.model.roi_head.bbox_head.num_classes == 1203
    cfg.model.backbone.init_cfg = None  # nothing to download: the count needs no weights
    model = MODELS.build(cfg.model)
    return {
        "all": sum(p.numel() for p in model.parameters()),
        "trainable": sum(p.numel() for p in model.parameters() if p.requires_grad),
    }


def test_statistics_sync_cost(benchmark, quick, shape, instance_counts, tmp_path):
    capacity = 32 if quick else SYNC_CAPACITY
    warmup, steps = (1, 2) if quick else (5, 40)
    params = None if quick else gradient_parameters(tmp_path)
    grad_numel = 1000 if quick else params["trainable"]
    queue = mp.get_context("spawn").Queue()

    def two_ranks():
        run_ranks(
            _rank_main,
            args=(
                _free_port(),
                shape,
                instance_counts.tolist(),
                capacity,
                warmup,
                steps,
                grad_numel,
                queue,
            ),
            nprocs=WORLD,
        )
        return dict(queue.get(timeout=60) for _ in range(WORLD))

    results = benchmark.pedantic(two_ranks, rounds=1, iterations=1)
    measured = results[0]  # the per-step maxima over both ranks: the same on each rank
    assert measured["gather"] == results[1]["gather"]
    assert measured["overflow_rows"] == 0  # the positives fit the block: no row was dropped

    # one rank's block: capacity rows of float32 features and int64 labels
    block = capacity * shape.dim * 4 + capacity * 8
    assert measured["gathered_bytes"] == WORLD * block  # the formula is what the engine moves
    info = {
        "world_size": WORLD,
        "transport": "gloo (CPU)",
        # report.py's implementation column: this benchmark's own stats are the whole run
        "backend": "2 gloo ranks; stats: whole run, per-step times: extra_info",
        "shape": vars(shape),
        "sync_capacity": capacity,
        "steps": steps,
        "block_bytes": block,
        # an all-gather: each rank sends its block to, and receives one from, every other rank
        "sent_bytes_per_rank_per_step": (WORLD - 1) * block,
        "received_bytes_per_rank_per_step": (WORLD - 1) * block,
        "gathered_buffer_bytes_per_rank": WORLD * block,
    }
    for name in ("gather", "update_synced", "update_local", "gradient_allreduce"):
        info[f"{name}_median_s"] = statistics.median(measured[name])
        info[f"{name}_min_s"] = min(measured[name])
    info["sync_overhead_median_s"] = info["update_synced_median_s"] - info["update_local_median_s"]
    if not quick:
        grad = params["trainable"] * 4
        info.update(
            lvis_model=LVIS_CONFIG,
            lvis_model_parameters=params["all"],
            lvis_model_trainable_parameters=params["trainable"],
            # what DDP all-reduces: the float32 gradients of the trainable parameters; a ring
            # all-reduce sends (and receives) 2 (W - 1) / W of it per rank
            gradient_allreduce_bytes=grad,
            gradient_ring_sent_bytes_per_rank_per_step=2 * (WORLD - 1) * grad // WORLD,
            sync_to_gradient_ring_traffic=(WORLD - 1) * block / (2 * (WORLD - 1) * grad / WORLD),
        )
    benchmark.extra_info.update(info)
