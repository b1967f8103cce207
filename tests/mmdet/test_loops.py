"""The resumable training loop and the generator states (``fasa_fast.mmdet.loops``), with a
stand-in runner and dataloader: which batches an epoch runs from its start and after a mid-epoch
resume, the refusal of a checkpoint outside the epoch, when the saved generators come back, and
the states' round trip. ``test_resume_mid_epoch.py`` resumes a real training run through them."""

from __future__ import annotations

import random
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import fasa_fast.mmdet.loops as loops_module
from fasa_fast.mmdet.loops import (
    ResumableEpochBasedTrainLoop,
    iterations_into_epoch,
    restore_rng_states,
    rng_states,
)


class Batches:
    """A dataloader stand-in: making an iterator draws from torch's generator (as a DataLoader's
    does: its base seed), recorded in ``seeds``; ``read`` counts the batches taken."""

    def __init__(self, n):
        self.n, self.read, self.seeds = n, 0, []

    def __len__(self):
        return self.n

    def __iter__(self):
        self.seeds.append(torch.rand(1).item())
        for i in range(self.n):
            self.read += 1
            yield f"batch{i}"


def stand_in_loop(batches, iteration, epoch):
    loop = ResumableEpochBasedTrainLoop.__new__(ResumableEpochBasedTrainLoop)
    events = []
    model = SimpleNamespace(train=lambda: events.append("train"))
    loop._runner = SimpleNamespace(call_hook=events.append, model=model)
    loop.dataloader, loop._iter, loop._epoch = batches, iteration, epoch
    loop._resume_rng_states = None

    def run_iter(idx, data_batch):
        events.append((idx, data_batch, torch.rand(1).item()))
        loop._iter += 1

    loop.run_iter = run_iter
    return loop, events


def test_the_loop_is_built_as_mmengine_builds_it():
    # positional and keyword arguments reach EpochBasedTrainLoop; nothing pending to restore
    class Loader(list):
        dataset = SimpleNamespace()  # no metainfo: mmengine only warns

    loader = Loader([0, 1, 2])
    loop = ResumableEpochBasedTrainLoop(SimpleNamespace(), loader, max_epochs=2)
    assert (loop.max_epochs, loop.max_iters, loop.dataloader) == (2, 6, loader)
    assert loop._resume_rng_states is None


def test_iterations_into_epoch():
    loop = SimpleNamespace(iter=11, epoch=2, dataloader=[0] * 4)
    assert iterations_into_epoch(loop) == 3
    assert iterations_into_epoch(SimpleNamespace(iter=8, epoch=2, dataloader=[0] * 4)) == 0


def test_an_epoch_from_its_start_runs_every_batch():
    batches = Batches(3)
    loop, events = stand_in_loop(batches, iteration=6, epoch=2)
    loop.run_epoch()
    names = [e if isinstance(e, str) else e[:2] for e in events]
    assert names == [
        "before_train_epoch",
        "train",
        (0, "batch0"),
        (1, "batch1"),
        (2, "batch2"),
        "after_train_epoch",
    ], names
    assert loop.epoch == 3 and loop.iter == 9


def test_a_mid_epoch_resume_skips_the_trained_batches(monkeypatch):
    logged = []
    monkeypatch.setattr(
        loops_module, "print_log", lambda msg, logger=None: logged.append((msg, logger))
    )
    batches = Batches(5)
    loop, events = stand_in_loop(batches, iteration=5 * 2 + 3, epoch=2)
    loop.run_epoch()
    runs = [e[:2] for e in events if isinstance(e, tuple)]
    assert runs == [(3, "batch3"), (4, "batch4")], f"batches trained: {runs}"
    assert batches.read == 5, "the skipped batches are read from the loader, then dropped"
    assert events[:2] == ["before_train_epoch", "train"] and events[-1] == "after_train_epoch"
    assert loop.epoch == 3
    assert logged == [
        (
            "resuming epoch 3 at batch 4 of 5: skipping the 3 batches the checkpoint had trained",
            "current",  # mmengine's current logger: the run's log file too
        )
    ], logged


@pytest.mark.parametrize("iteration", [5 * 2 + 5, 5 * 2 - 1])
def test_a_checkpoint_outside_the_epoch_is_refused(iteration):
    loop, events = stand_in_loop(Batches(5), iteration=iteration, epoch=2)
    with pytest.raises(RuntimeError, match="another dataset, batch size or number of GPUs"):
        loop.run_epoch()
    assert events == [], "nothing may run before the check"


@pytest.mark.parametrize("done", [0, 2])
def test_saved_generators_come_back_where_the_interrupted_run_stood(done):
    torch.manual_seed(7)
    saved = rng_states()
    first = torch.rand(1).item()  # what the interrupted run drew next after its checkpoint
    torch.manual_seed(99)
    batches = Batches(4)
    loop, events = stand_in_loop(batches, iteration=4 + done, epoch=1)
    loop.resume_rng_states(saved)
    loop.run_epoch()
    draws = [e[2] for e in events if isinstance(e, tuple)]
    if done == 0:  # at an epoch boundary: before the loader's iterator is made
        assert batches.seeds == [first], "the iterator must be made after the restore"
    else:  # mid-epoch: after the skipped batches, before the next one trains
        assert batches.seeds != [first] and draws[0] == first
    assert loop._resume_rng_states is None, "the states are used once"
    loop._iter, loop._epoch = 8, 2
    loop.run_epoch()  # the next epoch does not restore them again
    assert batches.seeds[-1] != first


def test_generator_states_round_trip():
    random.seed(3)
    np.random.seed(3)
    torch.manual_seed(3)
    np.random.randn()  # leaves a cached Gaussian in numpy's state
    states = rng_states()
    expected = (
        random.random(),
        random.gauss(0, 1),
        np.random.randn(),
        np.random.rand(),
        torch.rand(2),
    )
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    restore_rng_states(states)
    got = (random.random(), random.gauss(0, 1), np.random.randn(), np.random.rand(), torch.rand(2))
    assert got[:4] == expected[:4]
    torch.testing.assert_close(got[4], expected[4], rtol=0, atol=0)
    assert isinstance(states["python"][1], torch.Tensor), "stored as tensors (weights_only loads)"
    assert isinstance(states["numpy"][1], torch.Tensor)
    assert "cuda" not in states or torch.cuda.is_available()
