"""The harder generated long-tailed set (``make_hard_toy_lvis``) of the detection evidence, and
that the generator's defaults still write the files they wrote before it existed."""

from __future__ import annotations

import hashlib
import json
from collections import Counter

import cv2
import numpy as np
import pytest

from fasa_fast.mmdet.toy_lvis import (
    GROUP_IMAGE_RANGES,
    HARD_VARIANT,
    LVIS_GROUP_SHARES,
    lvis_like_image_counts,
    make_hard_toy_lvis,
    make_toy_lvis,
)

NUM_TRAIN = 130  # > 100, so that the frequent group exists under LVIS's rule


def _load(paths):
    return {split: json.loads(path.read_text()) for split, path in paths.items()}


@pytest.fixture(scope="module")
def hard(tmp_path_factory):
    root = tmp_path_factory.mktemp("hard")
    paths = make_hard_toy_lvis(root, num_train=NUM_TRAIN, num_val=40, image_size=64, seed=1)
    return root, _load(paths)


def test_default_options_write_the_same_annotations_as_before(tmp_path):
    # sha256 of the files written by the generator before the harder variant's options existed
    paths = make_toy_lvis(tmp_path, num_train=30, num_val=6, image_size=64, seed=3)
    digests = [hashlib.sha256(paths[s].read_bytes()).hexdigest() for s in ("train", "val")]
    assert digests == [
        "f5499f00240f89cf03fabe41c44d86f93ce33aecdf39e67d99a9b261861b8301",
        "0c93ba9fdfdab95f121af58ebefebacfcf44e6e2c056bc6e61055ce0dc653f45",
    ]


def test_lvis_like_image_counts_follow_lvis_group_shares_and_ranges():
    counts = lvis_like_image_counts(40, 300, seed=0)
    assert counts == lvis_like_image_counts(40, 300, seed=0)
    groups = [
        next(g for g, (lo, hi) in GROUP_IMAGE_RANGES.items() if lo <= n <= hi) for n in counts
    ]
    num_r, num_c = round(LVIS_GROUP_SHARES["r"] * 40), round(LVIS_GROUP_SHARES["c"] * 40)
    assert groups == ["r"] * num_r + ["c"] * num_c + ["f"] * (40 - num_r - num_c)
    assert max(lvis_like_image_counts(40, 50, seed=0)) == 50  # capped at the training images


def test_hard_variant_is_deterministic(hard, tmp_path):
    root, ann = hard
    again = make_hard_toy_lvis(tmp_path, num_train=NUM_TRAIN, num_val=40, image_size=64, seed=1)
    assert _load(again) == ann
    for split in ("train", "val"):
        names = sorted(p.name for p in (root / f"{split}2017").iterdir())
        assert names == sorted(p.name for p in (tmp_path / f"{split}2017").iterdir())
        for name in names[:5]:
            a = (root / f"{split}2017" / name).read_bytes()
            assert a == (tmp_path / f"{split}2017" / name).read_bytes()
    other = make_hard_toy_lvis(tmp_path / "s2", num_train=NUM_TRAIN, num_val=40, image_size=64)
    assert _load(other)["train"]["annotations"] != ann["train"]["annotations"]


def test_hard_variant_image_counts_and_frequency_groups_are_as_intended(hard):
    _, ann = hard
    train = ann["train"]
    intended = lvis_like_image_counts(HARD_VARIANT["num_classes"], NUM_TRAIN, seed=1)
    images = {c: set() for c in range(1, len(intended) + 1)}
    for a in train["annotations"]:
        images[a["category_id"]].add(a["image_id"])
    assert [len(images[c]) for c in sorted(images)] == intended
    cats = sorted(train["categories"], key=lambda c: c["id"])
    assert [c["image_count"] for c in cats] == intended
    # the rarest classes come first: rare, then common, then frequent, in LVIS v1's shares
    freq = "".join(c["frequency"] for c in cats)
    num_r, num_c = round(LVIS_GROUP_SHARES["r"] * 40), round(LVIS_GROUP_SHARES["c"] * 40)
    assert freq == "r" * num_r + "c" * num_c + "f" * (40 - num_r - num_c)
    # long-tailed instances: the frequent group holds most of them, the rare group few
    per_group = Counter(cats[a["category_id"] - 1]["frequency"] for a in train["annotations"])
    assert per_group["f"] > 0.6 * sum(per_group.values()) and per_group["r"] < per_group["c"]
    # the validation split is class-balanced: the rare group gets about its share of classes
    val = Counter(cats[a["category_id"] - 1]["frequency"] for a in ann["val"]["annotations"])
    assert 0.5 * num_r / 40 < val["r"] / sum(val.values()) < 1.5 * num_r / 40


def test_hard_variant_masks_inside_boxes_and_image(hard):
    _, ann = hard
    sizes = Counter()
    for split in ("train", "val"):
        for a in ann[split]["annotations"]:
            x, y, w, h = a["bbox"]
            (poly,) = a["segmentation"]
            xs, ys = np.array(poly[0::2]), np.array(poly[1::2])
            assert w > 0 and h > 0 and 0 < a["area"] <= w * h + 0.1
            assert xs.min() >= x - 0.01 and xs.max() <= x + w + 0.01
            assert ys.min() >= y - 0.01 and ys.max() <= y + h + 0.01
            assert xs.min() >= 0 and ys.min() >= 0 and xs.max() <= 64 and ys.max() <= 64
            sizes[split] += 1
    assert sizes["train"] > NUM_TRAIN * 3  # several objects per image
    # small objects: at most object_scale[1] of the side (val images hold <= max_objects, so
    # their objects are not shrunk further)
    sides = [max(a["bbox"][2:]) / 64 for a in ann["val"]["annotations"]]
    assert HARD_VARIANT["object_scale"][1] - 0.05 < max(sides) <= HARD_VARIANT["object_scale"][1]


def test_hard_variant_backgrounds_are_photographs(hard):
    root, ann = hard
    names = sorted((root / "train2017").iterdir())[:10]
    images = [cv2.imread(str(p)) for p in names]
    # a crop of a photograph, not a flat canvas: varied pixels in every image, and images differ
    masks = [np.ones(im.shape[:2], bool) for im in images]
    for im, mask, path in zip(images, masks, names, strict=True):
        image_id = int(path.stem)
        for a in ann["train"]["annotations"]:
            if a["image_id"] == image_id:
                x, y, w, h = (int(round(v)) for v in a["bbox"])
                mask[max(0, y - 1) : y + h + 2, max(0, x - 1) : x + w + 2] = False
        background = im[mask].astype(float)
        assert background.size and background.std() > 8
    means = [im.reshape(-1, 3).mean(0) for im in images]
    assert np.ptp(np.array(means), axis=0).max() > 20


def test_hard_variant_objects_overlap_at_most_max_overlap(hard):
    _, ann = hard
    by_image = {}
    for a in ann["val"]["annotations"]:  # val images: few objects, so placement rarely gives up
        by_image.setdefault(a["image_id"], []).append(a["bbox"])
    ious = []
    for boxes in by_image.values():
        for i, a in enumerate(boxes):
            for b in boxes[:i]:
                iw = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
                ih = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
                ious.append(iw * ih / (a[2] * a[3] + b[2] * b[3] - iw * ih))
    ious = np.array(ious)
    assert (ious > 0).sum() >= 5  # objects do overlap ...
    assert (ious > HARD_VARIANT["max_overlap"] + 0.02).mean() < 0.02  # ... but little
