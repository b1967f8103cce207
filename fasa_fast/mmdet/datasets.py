"""A held-out split of a training set, for FASA's adaptation pass.

``FASAHeldOutSplit(dataset, split='train'|'adapt', fraction, max_images, strategy, seed)`` wraps
any mmdet dataset config. Both splits compute the same held-out set of the wrapped dataset's
images with ``fasa_fast.splits.held_out_indices`` (``budget = ceil(fraction * N)``, capped at
``max_images``; by default chosen so that every class with two or more images has a held-out
image): ``adapt`` keeps those images, ``train`` the rest, so the images FASA steers its
sampling with are never trained on. Use the same arguments for both; ``pipeline`` replaces the
wrapped dataset's pipeline (the adaptation split needs no augmentation).
"""

from __future__ import annotations

import math
from typing import Any

from mmdet.registry import DATA_SAMPLERS, DATASETS
from mmengine.dist import get_dist_info
from torch.utils.data import Sampler

from fasa_fast.splits import STRATEGIES, fixed_sample, held_out_indices


@DATASETS.register_module()
class FASAHeldOutSplit:
    def __init__(
        self,
        dataset: dict | Any,
        split: str = "train",
        fraction: float = 0.01,
        max_images: int | None = None,
        strategy: str = "coverage",
        min_class_images: int = 2,
        seed: int = 0,
        pipeline: list[dict] | None = None,
        lazy_init: bool = False,
    ) -> None:
        if split not in ("train", "adapt"):
            raise ValueError(f"split: expected 'train' or 'adapt', got {split!r}")
        if not 0.0 < fraction < 1.0:
            raise ValueError(f"fraction: expected a value in (0, 1), got {fraction}")
        if strategy not in STRATEGIES:
            raise ValueError(f"strategy: expected one of {STRATEGIES}, got {strategy!r}")
        if pipeline is not None:  # e.g. the adaptation split: no augmentation, annotations kept
            if not isinstance(dataset, dict):
                raise ValueError("pipeline: can only replace the pipeline of a dataset config")
            dataset = dict(dataset, pipeline=pipeline)
        self.dataset = DATASETS.build(dataset) if isinstance(dataset, dict) else dataset
        self.split, self.fraction, self.max_images, self.seed = split, fraction, max_images, seed
        self.strategy, self.min_class_images = strategy, min_class_images
        self._indices: list[int] | None = None
        if not lazy_init:
            self.full_init()

    def full_init(self) -> None:
        if self._indices is not None:
            return
        self.dataset.full_init()
        total = len(self.dataset)
        budget = math.ceil(self.fraction * total)
        if self.max_images is not None:
            budget = min(budget, self.max_images)
        image_classes = [self.dataset.get_cat_ids(i) for i in range(total)]
        held = held_out_indices(
            image_classes,
            budget,
            strategy=self.strategy,
            min_class_images=self.min_class_images,
            seed=self.seed,
        )
        if self.split == "adapt":
            chosen = held
        else:
            held_set = set(held)
            chosen = [i for i in range(total) if i not in held_set]
        if not chosen:
            raise ValueError(
                f"FASAHeldOutSplit: the {self.split!r} split of {total} images is empty "
                f"(fraction={self.fraction}, max_images={self.max_images})"
            )
        self._indices = sorted(chosen)

    @property
    def metainfo(self) -> dict:
        return self.dataset.metainfo

    def __len__(self) -> int:
        self.full_init()
        return len(self._indices)

    def get_data_info(self, idx: int) -> dict:
        self.full_init()
        return self.dataset.get_data_info(self._indices[idx])

    def get_cat_ids(self, idx: int) -> list[int]:
        self.full_init()
        return self.dataset.get_cat_ids(self._indices[idx])

    def __getitem__(self, idx: int) -> dict:
        self.full_init()
        return self.dataset[self._indices[idx]]


@DATA_SAMPLERS.register_module()
class FASAAdaptationSampler(Sampler):
    """The adaptation pass's sampler: a fixed seeded sample of ``num_samples`` images of the
    dataset (all when None), the same every pass, counted over all ranks: rank ``r`` of ``W``
    reads every ``W``-th of them, without the padding repeats of mmengine's ``DefaultSampler``.
    """

    def __init__(self, dataset, num_samples: int | None = None, seed: int = 0) -> None:
        rank, world_size = get_dist_info()
        self.indices = fixed_sample(len(dataset), num_samples, seed)[rank::world_size]

    def __iter__(self):
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)
