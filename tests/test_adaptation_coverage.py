"""The adaptation-coverage simulation (benchmarks/adaptation_coverage.py) against hand-computed
cases, and design (b)'s held-out split against its budget at LVIS v1 scale."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.adaptation_coverage import (
    NUM_TRAIN_IMAGES,
    Plan,
    World,
    coverage_split,
    evaluate,
    join_nearest_group,
    load_lvis_categories,
    movable_classes,
    pass_images,
    random_split,
    sample_class_images,
)


def tiny_world() -> World:
    """6 images; class 0 (rare) in image 0, class 1 (common) in 1-2, class 2 (frequent) in 2-5.

    Instance counts 1, 2, 4 give Eq. 4 probabilities 4/7, 2/7, 1/7. Groups: {0}, {1, 2}.
    """
    return World(
        num_images=6,
        frequency=np.array(["r", "c", "f"]),
        prob=np.array([4, 2, 1]) / 7,
        class_images=[np.array([0]), np.array([1, 2]), np.array([2, 3, 4, 5])],
        group=lambda seen: np.where(seen, [0, 1, 1], -1),
        distance=np.array([[0.0, 5.0, 1.0], [5.0, 0.0, 2.0], [1.0, 2.0, 0.0]]),
    )


def test_coverage_split_picks_the_image_covering_most_classes():
    world = tiny_world()
    # class 0 has one image (not held out); class 1's image 2 also covers class 2: one image
    assert coverage_split(world.class_images, 6, budget=1).tolist() == [2]
    assert coverage_split(world.class_images, 6, budget=0).tolist() == []


def test_coverage_split_never_takes_a_class_s_last_training_image():
    # image 1 would cover both classes but is class 1's only image: image 0 is taken instead
    assert coverage_split([np.array([0, 1]), np.array([1])], 2, budget=5).tolist() == [0]


def test_pass_images_follow_the_sampler_and_the_per_rank_cap():
    split = np.array([1, 3, 5, 7, 9])
    # rank 0 gets 1, 5, 9 and stops after 2; rank 1 gets 3, 7
    assert pass_images(split, ranks=2, max_images_per_rank=2).tolist() == [1, 3, 5, 7]
    assert pass_images(split, ranks=1, max_images_per_rank=2).tolist() == [1, 3]
    assert pass_images(split, ranks=8, max_images_per_rank=500).tolist() == split.tolist()


def test_evaluate_tiny_case_exact_shares():
    world = tiny_world()
    row = evaluate(world, Plan(held_out=np.array([2]), pass_images=np.array([2])))
    # classes 1, 2 have data (image 2) and share group 1; class 0 is alone without data
    expected = {
        "move_r": 0.0,
        "move_c": 1.0,
        "move_f": 1.0,
        "data_r": 0.0,
        "data_c": 1.0,
        "data_f": 1.0,
        "mass": 3 / 7,
        "held_out": 1.0,
        "pass": 1.0,
        "pass_share": 1 / 6,
        "rare_losing": 0.0,
        "rare_lost_share": 0.0,
        "two_losing": 1.0,  # class 1 (2 images) gives image 2 to the held-out set
        "no_training": 0.0,
    }
    assert row == pytest.approx(expected)
    # (c): class 0 joins the nearest group with data, so everything can move
    row = evaluate(world, Plan(np.array([2]), np.array([2]), join_nearest=True))
    assert (row["move_r"], row["mass"]) == pytest.approx((1.0, 1.0))


def test_evaluate_class_without_training_images_never_moves():
    world = tiny_world()
    # class 0's only image is held out: it has adaptation data but is never seen (group -1)
    for join in (False, True):
        row = evaluate(world, Plan(np.array([0]), np.array([0]), join_nearest=join))
        assert row["mass"] == 0.0, f"join_nearest={join}: expected no mass to move, got {row}"
        assert (row["no_training"], row["rare_losing"], row["rare_lost_share"]) == (1, 1, 1)


def test_movable_and_join_nearest_group_by_hand():
    # groups {0}, {1, 5}, {2}, {3}; class 4 unseen. Data: classes 1, 3 and the unseen 4.
    groups = np.array([0, 1, 2, 3, -1, 1])
    has_data = np.array([False, True, False, True, True, False])
    # class 5 moves with class 1 (its group has data); the unseen class 4 never moves
    assert movable_classes(groups, has_data).tolist() == [False, True, False, True, False, True]
    big = 9.0
    distance = np.full((6, 6), big)
    np.fill_diagonal(distance, 0.0)
    for i, j, d in [(0, 5, 0.5), (0, 3, 1.0), (0, 4, 0.1), (2, 1, 3.0), (2, 3, 2.0), (2, 4, 0.1)]:
        distance[i, j] = distance[j, i] = d
    # class 0's nearest steerable class is 5 (no data itself, but in group 1 with data): group
    # 1; class 2's is 3: group 3; the unseen class 4 is nobody's anchor
    assert join_nearest_group(groups, has_data, distance).tolist() == [1, 1, 3, 3, -1, 1]


def test_sample_class_images_exact_counts_and_uniform_membership():
    rng = np.random.default_rng(0)
    counts = np.array([1, 5, 10])
    hits = np.zeros((3, 20))
    both = 0
    draws = 4000
    for _ in range(draws):
        sets = sample_class_images(counts, 20, rng)
        for c, images in enumerate(sets):
            assert len(np.unique(images)) == counts[c] and 0 <= images.min() <= images.max() < 20
            hits[c, images] += 1
        both += (0 in sets[1]) and (0 in sets[2])
    # every image holds class c with probability counts[c] / 20 (std <= 0.008 at 4000 draws)
    np.testing.assert_allclose(
        hits / draws, np.broadcast_to(counts[:, None] / 20, (3, 20)), atol=0.04
    )
    assert abs(both / draws - 0.25 * 0.5) < 0.03, (
        f"independence: expected ~0.125, got {both / draws}"
    )


def test_random_split_matches_the_held_out_split_size():
    held = random_split(NUM_TRAIN_IMAGES, 0.05, 1000, np.random.default_rng(0))
    assert len(np.unique(held)) == len(held) == 1000
    assert len(random_split(1000, 0.05, 1000, np.random.default_rng(0))) == 50


def test_coverage_split_meets_its_budget_at_lvis_scale():
    counts = np.array([c["image_count"] for c in load_lvis_categories()])
    class_images = sample_class_images(counts, NUM_TRAIN_IMAGES, np.random.default_rng(0))
    budget = int(0.01 * NUM_TRAIN_IMAGES)
    held = coverage_split(class_images, NUM_TRAIN_IMAGES, budget)
    assert len(np.unique(held)) == len(held) <= budget, f"budget {budget}, got {len(held)} images"
    held_per_class = np.array([np.isin(images, held).sum() for images in class_images])
    uncovered = np.flatnonzero((counts >= 2) & (held_per_class == 0))
    assert uncovered.size == 0, f"classes with >= 2 images and no held-out image: {uncovered[:10]}"
    assert (held_per_class < counts).all(), "a class lost all its training images"


def test_coverage_split_serves_the_rarest_classes_first_when_the_budget_binds():
    counts = np.array([c["image_count"] for c in load_lvis_categories()])
    class_images = sample_class_images(counts, NUM_TRAIN_IMAGES, np.random.default_rng(1))
    held = coverage_split(class_images, NUM_TRAIN_IMAGES, budget=100)
    assert len(held) == 100, f"expected the whole budget of 100 images used, got {len(held)}"
    covered = np.array([np.isin(images, held).any() for images in class_images])
    eligible = np.argsort(counts, kind="stable")
    rarest = eligible[counts[eligible] >= 2][:100]  # one image each at least covers these
    assert covered[rarest].all(), f"uncovered among the 100 rarest: {rarest[~covered[rarest]]}"
