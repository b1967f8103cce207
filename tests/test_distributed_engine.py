"""One FASA state on every rank: two CPU processes over gloo drive the engine with different
rows; after every step and every ``adapt()`` the states are compared bit for bit across ranks,
and with a single process folding both ranks' foreground rows (float64-independent check)."""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from tests.gloo import leave_process_group, run_ranks

C, D, STEPS = 7, 5, 6


def step_rows(step: int, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1000 * step + rank)
    n = 9 + rank  # ranks see different numbers of rows
    labels = torch.randint(0, C + 1, (n,), generator=g)  # C: background, skipped
    labels[0] = -1  # ignored
    features = torch.randn(n, D, generator=g) * (1 + rank)
    return features, labels


def engine(**kwargs):
    from fasa_fast import FASA

    return FASA(C, D, [40, 30, 20, 10, 5, 2, 1], warmup_epochs=0, capacity=8, **kwargs)


def state_of(fasa) -> dict:
    # numpy copies: they pickle by value (torch tensors would travel as shared memory that
    # vanishes with the process)
    return {
        k: v.detach().clone().numpy()
        for k, v in fasa.state_dict().items()
        if not k.endswith("_extra_state")
    }


def _rank_main(rank: int, world_size: int, port: int, queue, sync: bool) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        fasa = engine(sync_statistics=sync, sync_capacity=16)
        fasa.set_stream(rank=rank)
        fasa.prob.fill_(0.7)
        states = []
        for step in range(STEPS):
            fasa.update(*step_rows(step, rank))
            fasa.virtual_loss(torch.nn.Linear(D, C + 1))  # advances the shared counter
            states.append(state_of(fasa))
        for epoch in range(3):  # adaptation: each rank has its own share of the held-out rows
            g = torch.Generator().manual_seed(50 + 10 * epoch + rank)
            labels = torch.randint(0, C, (6,), generator=g)
            fasa.accumulate_adaptation_loss(labels, losses=torch.rand(6, generator=g) + epoch)
            fasa.reduce_adaptation_losses()
            fasa.adapt()
            states.append(state_of(fasa))
        queue.put((rank, states))
    finally:
        leave_process_group()


def run_two_ranks(sync: bool):
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    port = 29500 + (os.getpid() + (11 if sync else 23)) % 1000
    run_ranks(
        _rank_main,
        args=(2, port, queue, sync),
        nprocs=2,
    )
    states = dict(queue.get(timeout=120) for _ in range(2))
    return {
        r: [{k: torch.from_numpy(v) for k, v in s.items()} for s in ss] for r, ss in states.items()
    }


def test_synchronised_statistics_are_identical_on_every_rank_after_every_step():
    states = run_two_ranks(sync=True)
    reference = engine()
    for step, (first, second) in enumerate(zip(states[0], states[1], strict=True)):
        for key in first:
            assert torch.equal(first[key], second[key]), f"state {step}: {key} differs"
        if step < STEPS:  # one process folding both ranks' rows sees the same statistics
            rows = [step_rows(step, r) for r in range(2)]
            reference.update(torch.cat([f for f, _ in rows]), torch.cat([y for _, y in rows]))
            for key in ("mean", "std", "seen"):
                torch.testing.assert_close(
                    first[key], getattr(reference, key), rtol=1e-5, atol=1e-6
                )
    # the adaptation used the summed losses: probabilities moved, identically
    assert not torch.equal(states[0][-1]["prob"], torch.full((C,), 0.7))


def test_unsynchronised_statistics_stay_per_rank():
    states = run_two_ranks(sync=False)
    assert not torch.equal(states[0][0]["mean"], states[1][0]["mean"])
    solo = engine()
    solo.update(*step_rows(0, 1))
    torch.testing.assert_close(states[1][0]["mean"], solo.mean)
