"""Running and leaving gloo process groups in the multi-process tests and benchmarks."""

from __future__ import annotations

import time

import torch.distributed as dist
import torch.multiprocessing as mp


def leave_process_group() -> None:
    """Meet the other ranks at a barrier, then destroy the group.

    Without the barrier a rank that finished first tears its connections down while another is
    still inside ``destroy_process_group``: with torch 2.6's gloo (``make oldest``, 2026-11-26)
    rank 0 of the sync benchmark then waited there for good after rank 1 had exited, and the
    run hung. A rank that failed never reaches the barrier; the spawning parent sees its exit
    and ends the others.
    """
    try:
        dist.barrier()
    finally:
        dist.destroy_process_group()


def run_ranks(fn, args: tuple, nprocs: int, timeout: float = 900.0) -> None:
    """``fn(rank, *args)`` in ``nprocs`` spawned processes, joined with a deadline: a rank that
    hangs (in a collective, in teardown) fails the test after ``timeout`` seconds, naming it,
    instead of stalling the whole run. A rank's exception is raised here, as by ``mp.spawn``."""
    context = mp.start_processes(fn, args=args, nprocs=nprocs, join=False, start_method="spawn")
    deadline = time.monotonic() + timeout
    while not context.join(timeout=1.0):
        if time.monotonic() > deadline:
            stuck = [rank for rank, p in enumerate(context.processes) if p.is_alive()]
            for p in context.processes:
                if p.is_alive():
                    p.kill()
            raise TimeoutError(
                f"{fn.__name__}: ranks {stuck} of {nprocs} were still running after {timeout:.0f} s"
            )
