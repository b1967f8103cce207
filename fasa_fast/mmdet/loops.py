"""An epoch-based training loop that resumes mid-epoch where the checkpoint left off.

mmengine 0.10's ``EpochBasedTrainLoop`` restores the iteration counter from a checkpoint but
starts the epoch's dataloader from its first batch: a run resumed from an iteration checkpoint
(``CheckpointHook(by_epoch=False)``) trains the epoch's first batches twice, and FASA folds their
features into its statistics twice, so the resumed run silently leaves the uninterrupted one.
``ResumableEpochBasedTrainLoop`` skips the batches of the current epoch that the checkpoint had
already trained. The sampler gives the same order again (mmengine's samplers are seeded by the
run's seed and the epoch), so the run continues with the batch that follows the checkpoint.
Skipping reads the skipped batches from the dataloader, as mmengine's ``IterBasedTrainLoop``
does when it resumes. ``FASAHook`` warns when a plain ``EpochBasedTrainLoop`` resumes mid-epoch.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch
from mmdet.registry import LOOPS
from mmengine.logging import print_log
from mmengine.runner import EpochBasedTrainLoop


def iterations_into_epoch(loop: EpochBasedTrainLoop) -> int:
    """How many batches of the current epoch were trained before this run started (0 at an
    epoch boundary): the iteration counter minus the whole epochs behind it."""
    return loop.iter - loop.epoch * len(loop.dataloader)


@LOOPS.register_module()
class ResumableEpochBasedTrainLoop(EpochBasedTrainLoop):
    """``EpochBasedTrainLoop`` that continues a mid-epoch checkpoint at the next batch, with the
    random generators as they stood when the checkpoint was written (``resume_rng_states``)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._resume_rng_states: dict[str, Any] | None = None

    def resume_rng_states(self, states: dict[str, Any]) -> None:
        """Restore ``states`` (from ``rng_states``) where the interrupted run stood when it wrote
        its checkpoint: before the epoch's dataloader iterator is made (whose creation draws
        from torch's generator) at an epoch boundary, after the skipped batches mid-epoch."""
        self._resume_rng_states = states

    def _restore_pending_rng_states(self) -> None:
        if self._resume_rng_states is not None:
            restore_rng_states(self._resume_rng_states)
            self._resume_rng_states = None

    def run_epoch(self) -> None:
        done = iterations_into_epoch(self)
        if not 0 <= done < len(self.dataloader):
            raise RuntimeError(
                f"ResumableEpochBasedTrainLoop: the checkpoint's iteration {self.iter} lies "
                f"{done} batches into epoch {self.epoch + 1}, which has {len(self.dataloader)}: "
                "it was written with another dataset, batch size or number of GPUs"
            )
        if done:
            print_log(
                f"resuming epoch {self.epoch + 1} at batch {done + 1} of {len(self.dataloader)}: "
                f"skipping the {done} batches the checkpoint had trained",
                logger="current",
            )
        self.runner.call_hook("before_train_epoch")
        self.runner.model.train()
        if not done:
            self._restore_pending_rng_states()
        batches = iter(self.dataloader)
        if done:
            for _ in range(done):
                next(batches)  # loaded and dropped, as the interrupted run's workers loaded them
            self._restore_pending_rng_states()
        for idx, data_batch in enumerate(batches, start=done):
            self.run_iter(idx, data_batch)
        self.runner.call_hook("after_train_epoch")
        self._epoch += 1


# ---- the global random states, in the checkpoint -------------------------------------------
# mmengine 0.10 checkpoints no random state: a resumed run draws its RoI samples (mmdet's
# RandomSampler uses torch's global generator) and any main-process augmentation from the
# generators as seeded at start-up, not as they stood at the checkpoint, so it leaves the
# uninterrupted run at its first step. FASAHook stores every rank's in each checkpoint (gathered
# when a CheckpointHook is about to save) and puts each rank's back on resume. Stored as tensors
# and numbers, which a ``weights_only`` load accepts. Dataloader workers reseed themselves each
# epoch (mmengine's ``worker_init_fn``): the loop above replays the skipped batches through them
# to keep their streams.


def rng_states() -> dict[str, Any]:
    """This process's Python, NumPy, torch CPU and CUDA generator states."""
    version, mt, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    states = {
        "python": (version, torch.tensor(mt, dtype=torch.int64), gauss),
        "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore_rng_states(states: dict[str, Any]) -> None:
    """Set the generators to ``states`` (from ``rng_states``)."""
    version, mt, gauss = states["python"]
    random.setstate((version, tuple(int(v) for v in mt.tolist()), gauss))
    kind, keys, pos, has_gauss, cached = states["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
