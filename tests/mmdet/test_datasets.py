"""The held-out split and the adaptation sampler (``fasa_fast.mmdet.datasets``), on a stand-in
dataset and ``torch.distributed``: the partition by the split rule, ``max_images``, the pipeline
of a config, the arguments and defaults, one fixed sample split over the ranks.
``test_adaptation_set.py`` runs them across two gloo processes and through the runner."""

from __future__ import annotations

import math

import pytest

import fasa_fast.mmdet.datasets as datasets_module
from fasa_fast.mmdet.datasets import FASAAdaptationSampler, FASAHeldOutSplit
from fasa_fast.splits import fixed_sample, held_out_indices


class Images:
    """A dataset stand-in: image i holds the classes ``classes[i]``."""

    metainfo = {"classes": ("a", "b", "c")}

    def __init__(self, classes):
        self.classes, self.inits = classes, 0

    def full_init(self):
        self.inits += 1

    def __len__(self):
        return len(self.classes)

    def get_cat_ids(self, i):
        return list(self.classes[i])

    def get_data_info(self, i):
        return {"img_id": i}

    def __getitem__(self, i):
        return f"image{i}"


CLASSES = [[0], [0, 1], [1], [2], [2], [0], [1, 2], [0], [1], [2]]


@pytest.mark.parametrize("strategy", ["coverage", "random"])
def test_held_out_split_partitions_by_the_split_rule(strategy):
    # min_class_images=5: no class has 5 images, so coverage holds none out for coverage's sake
    # (with the default 2 it would pick other images: [0, 1, 4])
    kwargs = dict(fraction=0.25, strategy=strategy, min_class_images=5, seed=4)
    adapt = FASAHeldOutSplit(Images(CLASSES), split="adapt", **kwargs)
    train = FASAHeldOutSplit(Images(CLASSES), split="train", **kwargs)
    held = held_out_indices(
        CLASSES, math.ceil(0.25 * 10), strategy=strategy, min_class_images=5, seed=4
    )
    assert held == [0, 4, 9]
    assert [adapt.get_data_info(i)["img_id"] for i in range(len(adapt))] == held
    rest = [i for i in range(10) if i not in held]
    assert [train[i] for i in range(len(train))] == [f"image{i}" for i in rest]
    assert [train.get_cat_ids(i) for i in range(len(train))] == [CLASSES[i] for i in rest]
    assert adapt.metainfo == Images.metainfo


def test_held_out_split_caps_at_max_images_and_initialises_once():
    images = Images(CLASSES)
    split = FASAHeldOutSplit(images, split="adapt", fraction=0.5, max_images=2, lazy_init=True)
    assert split._indices is None and images.inits == 0, "lazy_init: nothing read yet"
    assert len(split) == 2
    split.full_init()
    assert images.inits == 1
    assert len(FASAHeldOutSplit(Images(CLASSES), split="adapt", fraction=0.5)) == 5
    # a cap above ceil(fraction * N) changes nothing
    assert len(FASAHeldOutSplit(Images(CLASSES), split="adapt", fraction=0.2, max_images=4)) == 2


def test_held_out_split_replaces_the_pipeline_of_a_config(monkeypatch):
    built = []
    monkeypatch.setattr(
        datasets_module.DATASETS, "build", lambda config: built.append(config) or Images(CLASSES)
    )
    FASAHeldOutSplit(
        dict(type="X", pipeline=["aug"]), split="adapt", fraction=0.2, pipeline=["plain"]
    )
    assert built == [dict(type="X", pipeline=["plain"])]
    with pytest.raises(ValueError, match="can only replace the pipeline of a dataset config"):
        FASAHeldOutSplit(Images(CLASSES), pipeline=[])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(split="val"), "split: expected 'train' or 'adapt', got 'val'"),
        (dict(fraction=0.0), r"fraction: expected a value in \(0, 1\), got 0.0"),
        (dict(fraction=1.0), r"fraction: expected a value in \(0, 1\), got 1.0"),
        (dict(strategy="first"), "strategy: expected one of"),
        (dict(fraction=0.95, strategy="random"), "the 'train' split of 10 images is empty"),
    ],
)
def test_held_out_split_refuses_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        FASAHeldOutSplit(Images(CLASSES), **kwargs)


def test_held_out_split_defaults():
    split = FASAHeldOutSplit(Images(CLASSES))
    got = (
        split.split,
        split.fraction,
        split.max_images,
        split.strategy,
        split.min_class_images,
        split.seed,
    )
    assert got == ("train", 0.01, None, "coverage", 2, 0)
    assert len(split) == 9  # ceil(0.01 * 10) = 1 image held out


@pytest.mark.parametrize("rank, world", [(0, 1), (0, 2), (1, 2), (2, 3)])
def test_adaptation_sampler_splits_one_fixed_sample_over_the_ranks(monkeypatch, rank, world):
    monkeypatch.setattr(datasets_module, "get_dist_info", lambda: (rank, world))
    sampler = FASAAdaptationSampler(list(range(40)), num_samples=7, seed=3)
    expected = fixed_sample(40, 7, seed=3)[rank::world]
    assert list(sampler) == expected and len(sampler) == len(expected)
    everything = FASAAdaptationSampler(list(range(5)))
    assert list(everything) == list(range(5))[rank::world]
    default_seed = FASAAdaptationSampler(list(range(40)), num_samples=7)
    assert list(default_seed) == fixed_sample(40, 7, seed=0)[rank::world]
