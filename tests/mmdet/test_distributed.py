"""The adaptation losses are summed across ranks (two CPU processes over gloo)."""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def _rank_main(rank: int, world_size: int, port: int, queue) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        from fasa_fast import FASA
        from fasa_fast.mmdet.hooks import reduce_adaptation_losses

        fasa = FASA(3, 2, [5, 5, 5])
        # rank 0 saw class 0 twice (losses 1, 3); rank 1 saw class 0 once (5) and class 2 once (7)
        if rank == 0:
            fasa.accumulate_adaptation_loss(torch.tensor([0, 0]), losses=torch.tensor([1.0, 3.0]))
        else:
            fasa.accumulate_adaptation_loss(torch.tensor([0, 2]), losses=torch.tensor([5.0, 7.0]))
        reduce_adaptation_losses(fasa)
        queue.put((rank, fasa.loss_sum.tolist(), fasa.loss_count.tolist()))
    finally:
        dist.destroy_process_group()


def test_adaptation_losses_sum_across_ranks():
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    port = 29500 + os.getpid() % 1000
    mp.start_processes(_rank_main, args=(2, port, queue), nprocs=2, join=True, start_method="spawn")
    results = sorted(queue.get(timeout=60) for _ in range(2))
    for _, loss_sum, loss_count in results:
        assert loss_sum == [9.0, 0.0, 7.0]
        assert loss_count == [3.0, 0.0, 1.0]
