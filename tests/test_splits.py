"""The held-out split for the adaptation pass (``fasa_fast.splits``), on hand-built image sets."""

from __future__ import annotations

import pytest
import torch

from fasa_fast.splits import fixed_sample, held_out_indices

# image -> classes; class "r" is in 2 images (3, 5), "c" in 3 (0, 3, 4), "f" in 5, "x" in 1 (6)
IMAGES = [["c", "f"], ["f"], ["f"], ["r", "c"], ["c", "f"], ["r"], ["x", "f"], []]


def test_coverage_gives_every_class_with_two_images_one_held_out_image():
    held = held_out_indices(IMAGES, budget=2, seed=0)
    # "r" (2 images) first: image 3 also covers "c", image 5 covers nothing else -> 3 wins;
    # "c" is then covered; "f" (5 images) next: its image covering most new classes is a tie
    # (none left but "f"), broken by the seeded order. "x" has one image: never held out.
    assert 3 in held and 6 not in held and len(held) == 2
    covered = {c for i in held for c in IMAGES[i]}
    assert {"r", "c", "f"} <= covered


def test_coverage_fills_the_rest_of_the_budget_in_the_seeded_random_order():
    held = held_out_indices(IMAGES, budget=4, seed=3)
    covering = set(held_out_indices(IMAGES, budget=2, seed=3))
    assert len(held) == 4 and covering <= set(held)
    # the fill: the earliest images of the seeded order that take no class's last image
    order = torch.randperm(len(IMAGES), generator=torch.Generator().manual_seed(3)).tolist()
    first_fill = next(
        i for i in order if i not in covering and i not in (5, 6) and not {0, 4} <= covering | {i}
    )
    assert first_fill in held


def test_no_class_ever_loses_its_last_training_image():
    for seed in range(20):
        for budget in range(len(IMAGES) + 1):
            held = set(held_out_indices(IMAGES, budget=budget, seed=seed))
            for c in {c for classes in IMAGES for c in classes}:
                kept = [i for i, classes in enumerate(IMAGES) if c in classes and i not in held]
                assert kept, f"class {c} lost every training image (seed {seed}, budget {budget})"


def test_coverage_within_a_small_budget_serves_the_rarest_classes_first():
    assert held_out_indices(IMAGES, budget=1, seed=0) == [3]
    assert held_out_indices(IMAGES, budget=0, seed=0) == []


def test_min_class_images_keeps_classes_below_it_whole():
    held = held_out_indices(IMAGES, budget=1, min_class_images=3, seed=0)
    # "r" (2 images) is below the threshold: "c" (3 images) is served first, by the image that
    # covers most uncovered classes ("c" with "f": 0 or 4; not 3, whose "r" is not a target)
    assert held in ([0], [4])


def test_random_strategy_is_the_seeded_permutation_prefix():
    order = torch.randperm(len(IMAGES), generator=torch.Generator().manual_seed(7)).tolist()
    with_objects = [i for i in order if IMAGES[i]]  # image 7 has none: never held out
    assert held_out_indices(IMAGES, 3, strategy="random", seed=7) == sorted(with_objects[:3])
    for seed in range(10):
        for strategy in ("random", "coverage"):
            assert 7 not in held_out_indices(IMAGES, 7, strategy=strategy, seed=seed)


def test_the_split_is_deterministic_and_budget_bounded():
    rng = torch.Generator().manual_seed(0)
    images = [torch.randint(0, 50, (int(n),), generator=rng).tolist() for n in range(1, 200)]
    a = held_out_indices(images, 20, seed=1)
    assert a == held_out_indices(images, 20, seed=1)
    assert len(a) == 20 and len(set(a)) == 20


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(budget=-1), "budget: expected >= 0, got -1"),
        (dict(budget=1, strategy="greedy"), "strategy: expected one of"),
        (dict(budget=1, min_class_images=1), "min_class_images: expected >= 2, got 1"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        held_out_indices(IMAGES, **kwargs)


def test_fixed_sample_spreads_over_the_whole_set_and_repeats_itself():
    sample = fixed_sample(1000, 50, seed=0)
    assert sample == fixed_sample(1000, 50, seed=0) and sample == sorted(set(sample))
    assert len(sample) == 50 and sample[-1] > 500  # not a prefix
    assert fixed_sample(10, None) == list(range(10)) and fixed_sample(10, 20) == list(range(10))
    with pytest.raises(ValueError, match="num_samples: expected >= 1 or None, got 0"):
        fixed_sample(10, 0)
