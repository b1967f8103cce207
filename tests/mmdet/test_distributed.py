"""The adaptation losses are summed across ranks (two CPU processes over gloo): the reduction
itself, and ``FASAHook.after_train_epoch`` adapting every rank from the sum."""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from tests.gloo import leave_process_group, run_ranks


def _rank_main(rank: int, world_size: int, port: int, queue) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        from fasa_fast import FASA

        fasa = FASA(3, 2, [5, 5, 5])
        # rank 0 saw class 0 twice (losses 1, 3); rank 1 saw class 0 once (5) and class 2 once (7)
        if rank == 0:
            fasa.accumulate_adaptation_loss(torch.tensor([0, 0]), losses=torch.tensor([1.0, 3.0]))
        else:
            fasa.accumulate_adaptation_loss(torch.tensor([0, 2]), losses=torch.tensor([5.0, 7.0]))
        fasa.reduce_adaptation_losses()
        queue.put((rank, fasa.loss_sum.tolist(), fasa.loss_count.tolist()))
    finally:
        leave_process_group()


def test_adaptation_losses_sum_across_ranks():
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    port = 29500 + os.getpid() % 1000
    run_ranks(
        _rank_main,
        args=(2, port, queue),
        nprocs=2,
    )
    results = sorted(queue.get(timeout=60) for _ in range(2))
    for _, loss_sum, loss_count in results:
        assert loss_sum == [9.0, 0.0, 7.0]
        assert loss_count == [3.0, 0.0, 1.0]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# Per rank and epoch: (labels, losses) of the adaptation pass. Class 0 has unequal image counts
# per rank, so that the rank-local means move the other way from the global one:
#   epoch 1: rank 0 [1] (mean 1), rank 1 [5, 5, 5] (mean 5)        global [1, 5, 5, 5]: mean 4
#   epoch 2: rank 0 [1.5] * 3 (1.5 > 1), rank 1 [5.5] (5.5 > 5)    global: mean 10 / 4 = 2.5 < 4
# Reduced, both ranks see class 0's loss fall and raise its group (alpha); a rank that adapted
# from its own images only would see it rise and lower it (beta). Class 2 has data on rank 1 in
# epoch 1 only: its global mean is 7 and it is not comparable in epoch 2.
HOOK_PASSES = {
    0: [([0], [1.0]), ([0, 0, 0], [1.5, 1.5, 1.5])],
    1: [([0, 0, 0, 2], [5.0, 5.0, 5.0, 7.0]), ([0], [5.5])],
}


def _hook_rank_main(rank: int, world_size: int, port: int, queue) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    # mmengine's pytorch launcher calls torch.cuda.set_device: on CPU the group is made here
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        import logging
        from types import SimpleNamespace

        from mmengine.logging import MessageHub

        from fasa_fast import FASA
        from fasa_fast.mmdet.bbox_heads import FASABBoxHeadMixin
        from fasa_fast.mmdet.hooks import FASAHook

        class Head(FASABBoxHeadMixin, torch.nn.Module):
            def __init__(self) -> None:
                torch.nn.Module.__init__(self)
                self.fasa = FASA(3, 2, [5, 5, 5], warmup_epochs=0)
                self.fasa_class_frequency = ["r", "c", "f"]

        head = Head()
        # every class seen, the same statistics on both ranks (as after a synchronised step)
        features = torch.tensor([[0.0, 0.0], [0.2, 0.1], [3.0, 3.0], [3.1, 2.9], [9.0, 0.0]])
        head.fasa.update(features, torch.tensor([0, 0, 1, 1, 2]))
        hook = FASAHook(plot=False)
        hook.stages = [(None, head)]
        passes = iter(HOOK_PASSES[rank])

        def adaptation_pass(runner) -> int:  # what the model's pass on this rank's images adds
            labels, losses = next(passes)
            head.fasa.accumulate_adaptation_loss(torch.tensor(labels), losses=torch.tensor(losses))
            return len(labels)

        hook._adaptation_pass = adaptation_pass
        runner = SimpleNamespace(
            epoch=0,
            logger=logging.getLogger(f"fasa_test_rank{rank}"),
            message_hub=MessageHub.get_instance(f"fasa_test_rank{rank}"),
            visualizer=SimpleNamespace(add_scalars=lambda scalars, step: None),
        )
        prob_before = head.fasa.prob.clone()
        hook.after_train_epoch(runner)
        first = (head.fasa.prev_class_loss.tolist(), head.fasa.prev_class_valid.tolist())
        runner.epoch = 1
        hook.after_train_epoch(runner)
        queue.put(
            (
                rank,
                first,
                prob_before.tolist(),
                head.fasa.prob.tolist(),
                head.fasa.groups.tolist(),
                head.fasa.num_adaptations,
            )
        )
    finally:
        leave_process_group()


def test_hook_adapts_every_rank_from_the_summed_losses():
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    run_ranks(
        _hook_rank_main,
        args=(2, _free_port(), queue),
        nprocs=2,
    )
    results = sorted(queue.get(timeout=60) for _ in range(2))
    for rank, (prev_loss, prev_valid), prob_before, prob, groups, adaptations in results:
        assert adaptations == 2, f"rank {rank}: num_adaptations: expected 2, got {adaptations}"
        # the first adaptation records the global per-class means: (1 + 15) / 4 and 7 / 1
        assert prev_loss == [4.0, 0.0, 7.0], (
            f"rank {rank}: recorded losses: expected [4, 0, 7], got {prev_loss}"
        )
        assert prev_valid == [True, False, True], (
            f"rank {rank}: classes with data: expected [True, False, True], got {prev_valid}"
        )
        # the second: class 0's global mean fell (2.5 < 4), so its whole group is raised
        assert groups[0] >= 0, f"rank {rank}: class 0 was seen but not grouped: {groups}"
        expected = [
            min(1.0, p * 1.1) if g == groups[0] else p
            for p, g in zip(prob_before, groups, strict=True)
        ]
        assert prob == pytest.approx(expected, rel=1e-6), (
            f"rank {rank}: probabilities: expected {expected}, got {prob}"
        )
