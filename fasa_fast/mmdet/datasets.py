"""A held-out split of a training set, for FASA's adaptation pass.

``FASAHeldOutSplit(dataset, split='train'|'adapt', fraction, max_images, seed)`` wraps any mmdet
dataset config. Both splits draw the same seeded permutation of the wrapped dataset's images:
``adapt`` keeps the first ``min(round(fraction * N), max_images)`` images, ``train`` the rest, so
the images FASA steers its sampling with are never trained on. Use the same arguments for both;
``pipeline`` replaces the wrapped dataset's pipeline (the adaptation split needs no augmentation).
"""

from __future__ import annotations

from typing import Any

import torch
from mmdet.registry import DATASETS


@DATASETS.register_module()
class FASAHeldOutSplit:
    def __init__(
        self,
        dataset: dict | Any,
        split: str = "train",
        fraction: float = 0.05,
        max_images: int | None = 1000,
        seed: int = 0,
        pipeline: list[dict] | None = None,
        lazy_init: bool = False,
    ) -> None:
        if split not in ("train", "adapt"):
            raise ValueError(f"split: expected 'train' or 'adapt', got {split!r}")
        if not 0.0 < fraction < 1.0:
            raise ValueError(f"fraction: expected a value in (0, 1), got {fraction}")
        if pipeline is not None:  # e.g. the adaptation split: no augmentation, annotations kept
            if not isinstance(dataset, dict):
                raise ValueError("pipeline: can only replace the pipeline of a dataset config")
            dataset = dict(dataset, pipeline=pipeline)
        self.dataset = DATASETS.build(dataset) if isinstance(dataset, dict) else dataset
        self.split, self.fraction, self.max_images, self.seed = split, fraction, max_images, seed
        self._indices: list[int] | None = None
        if not lazy_init:
            self.full_init()

    def full_init(self) -> None:
        if self._indices is not None:
            return
        self.dataset.full_init()
        total = len(self.dataset)
        held = round(self.fraction * total)
        if self.max_images is not None:
            held = min(held, self.max_images)
        order = torch.randperm(total, generator=torch.Generator().manual_seed(self.seed)).tolist()
        chosen = order[:held] if self.split == "adapt" else order[held:]
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
