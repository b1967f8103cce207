"""A small, deterministic long-tailed instance-segmentation dataset in LVIS v1 format.

Each class is a filled shape (rectangle, ellipse or triangle) of its own colour; class
frequencies fall off exponentially, so a few classes are frequent and most are rare. Images
are written as JPEG files under ``<root>/train2017`` and ``<root>/val2017``; annotations in LVIS
v1 layout under ``<root>/annotations/lvis_v1_{train,val}.json``: categories with ``frequency``
(LVIS's rule on image counts: rare <= 10, common 11-100, frequent > 100), ``image_count`` and
``instance_count``; images with ``coco_url`` (what MMDetection's LVISV1Dataset reads),
``neg_category_ids`` and ``not_exhaustive_category_ids``; instances with boxes, polygon masks
and areas. Nothing is downloaded; the same arguments give the same files.

The harder variant (``HARD_VARIANT``, ``make_hard_toy_lvis``; the detection evidence in
docs/reports/detection_evidence.md) has 40 classes whose training image counts follow LVIS v1's
proportions (``lvis_like_image_counts``: 28% rare with 1-10 images, 38% common with 11-100, 34%
frequent with more than 100), smaller objects that may partly overlap, per-instance colour
jitter, photographs as backgrounds (random crops of the two sample images that ship inside
scikit-learn, ``sklearn.datasets.load_sample_images``) and a validation split in which every
class is equally likely, so that APr is measured on as many instances as APf.

Run: ``python -m fasa_fast.mmdet.toy_lvis --root data/toy_lvis [--variant hard]``
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

SHAPES = ("rectangle", "ellipse", "triangle")

# LVIS v1's share of rare / common / frequent categories (337, 461 and 405 of 1203).
LVIS_GROUP_SHARES = {"r": 337 / 1203, "c": 461 / 1203, "f": 405 / 1203}
# Training image counts per group (LVIS's rule: rare <= 10, common 11-100, frequent > 100).
GROUP_IMAGE_RANGES = {"r": (1, 10), "c": (11, 100), "f": (101, 160)}

# The harder variant's options for make_toy_lvis (image counts from lvis_like_image_counts).
HARD_VARIANT = dict(
    num_classes=40,
    image_size=128,
    max_objects=6,
    object_scale=(0.1, 0.3),
    max_overlap=0.3,
    colour_jitter=24,
    backgrounds=True,
    balanced_val=True,
)


def _frequency(image_count: int) -> str:
    return "r" if image_count <= 10 else ("c" if image_count <= 100 else "f")


def _polygon(shape: str, x: float, y: float, w: float, h: float) -> list[float]:
    if shape == "rectangle":
        pts = [(x, y), (x + w, y), (x + w, y + h), (x, y + h)]
    elif shape == "triangle":
        pts = [(x + w / 2, y), (x + w, y + h), (x, y + h)]
    else:
        pts = [
            (x + w / 2 + w / 2 * math.cos(t), y + h / 2 + h / 2 * math.sin(t))
            for t in np.linspace(0, 2 * math.pi, 16, endpoint=False)
        ]
    return [round(float(v), 2) for p in pts for v in p]


def _polygon_area(flat: list[float]) -> float:
    xs, ys = np.array(flat[0::2]), np.array(flat[1::2])
    return float(0.5 * abs(np.dot(xs, np.roll(ys, 1)) - np.dot(ys, np.roll(xs, 1))))


def lvis_like_image_counts(num_classes: int, num_train: int, seed: int = 0) -> list[int]:
    """Per-class training image counts with LVIS v1's group shares: class ``c`` is rare, common
    or frequent in that order of class ids (rare first), its count drawn log-uniformly in
    ``GROUP_IMAGE_RANGES`` and capped at ``num_train``."""
    rng = np.random.default_rng(seed)
    num_rare = round(LVIS_GROUP_SHARES["r"] * num_classes)
    num_common = round(LVIS_GROUP_SHARES["c"] * num_classes)
    groups = ["r"] * num_rare + ["c"] * num_common
    groups += ["f"] * (num_classes - len(groups))
    counts = []
    for group in groups:
        low, high = GROUP_IMAGE_RANGES[group]
        count = int(round(math.exp(rng.uniform(math.log(low), math.log(high + 1))) - 0.5))
        counts.append(min(num_train, max(low, min(high, count))))
    return counts


def _background_source():
    """The photographs shipped with scikit-learn (china.jpg, flower.jpg), BGR uint8."""
    from sklearn.datasets import load_sample_images

    return [np.ascontiguousarray(img[:, :, ::-1]) for img in load_sample_images().images]


def _background(rng: np.random.Generator, photos: list[np.ndarray], size: int) -> np.ndarray:
    import cv2

    photo = photos[int(rng.integers(len(photos)))]
    height, width = photo.shape[:2]
    side = int(rng.integers(size, min(height, width) + 1))
    y, x = int(rng.integers(0, height - side + 1)), int(rng.integers(0, width - side + 1))
    patch = photo[y : y + side, x : x + side]
    if rng.random() < 0.5:
        patch = patch[:, ::-1]
    return np.ascontiguousarray(cv2.resize(patch, (size, size), interpolation=cv2.INTER_AREA))


def _iou(a: Sequence[float], b: Sequence[float]) -> float:
    """IoU of two ``(x, y, w, h)`` boxes."""
    iw = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = iw * ih
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


def make_hard_toy_lvis(
    root: str | Path, *, num_train: int = 300, num_val: int = 80, seed: int = 0, **overrides
) -> dict[str, Path]:
    """The harder variant (``HARD_VARIANT``, LVIS-like image counts); ``overrides`` go to
    ``make_toy_lvis``."""
    options = dict(HARD_VARIANT, num_train=num_train, num_val=num_val, seed=seed)
    options.update(overrides)
    if "image_counts" not in options:
        options["image_counts"] = lvis_like_image_counts(
            options["num_classes"], options["num_train"], seed
        )
    return make_toy_lvis(root, **options)


# Keyword options with defaults, alike in shape to FASA.__init__'s only: no logic to share.
def make_toy_lvis(
    root: str | Path,
    *,
    num_classes: int = 20,
    num_train: int = 300,
    num_val: int = 60,
    image_size: int = 128,
    imbalance: float = 50.0,
    max_objects: int = 4,
    num_empty: int = 0,
    copies: int = 1,
    categories: list[dict] | None = None,
    seed: int = 0,
    image_counts: Sequence[int] | None = None,
    object_scale: tuple[float, float] = (0.2, 0.45),
    max_overlap: float | None = None,
    colour_jitter: int = 0,
    backgrounds: bool = False,
    balanced_val: bool = False,
) -> dict[str, Path]:
    """Write the dataset under ``root``; returns the paths of the two annotation files.

    Every class gets at least ``copies`` training images: training image ``i`` starts with one
    object of each class ``c`` with ``c = i - j (mod num_train)`` for ``j < copies`` (so with more
    classes than training images, images carry several guaranteed objects, drawn smaller). ``num_empty``
    images without any object are added to each split, as LVIS has them. ``categories``
    (``num_classes`` dicts with ``name`` and ``frequency``, e.g. LVIS v1's own) replaces the
    generated names and the frequency groups derived from the generated image counts.

    Options of the harder variant (their defaults leave the files as they were):
    ``image_counts`` (one per class): class ``c`` appears in exactly that many training images,
    a seeded random set (replaces the frequency fall-off and ``copies``; an image holds the
    classes drawn for it, so it may hold more than ``max_objects``, drawn smaller, or none);
    ``object_scale``: range of an object's width and height as a share of the image side;
    ``max_overlap``: a new object is placed (up to 20 tries) where its box's IoU with every box
    already in the image is at most this (later objects are painted over earlier ones; masks
    stay whole); ``colour_jitter``: each instance's colour moves by up to this much per
    channel; ``backgrounds``: the canvas is a random crop of a scikit-learn sample photograph
    instead of dark noise; ``balanced_val``: validation objects are drawn uniformly over the
    classes instead of by training frequency.
    """
    if num_train < 1 or num_classes < 1:
        raise ValueError(f"num_train, num_classes: expected >= 1, got {num_train}, {num_classes}")
    if not 1 <= copies <= num_train:
        raise ValueError(f"copies: expected 1 <= copies <= num_train={num_train}, got {copies}")
    if categories is not None and len(categories) != num_classes:
        raise ValueError(
            f"categories: expected num_classes={num_classes} entries, got {len(categories)}"
        )
    if image_counts is not None and (
        len(image_counts) != num_classes or not all(0 <= n <= num_train for n in image_counts)
    ):
        raise ValueError(
            f"image_counts: expected {num_classes} counts in [0, num_train={num_train}], "
            f"got {list(image_counts)}"
        )
    import cv2

    root = Path(root)
    rng = np.random.default_rng(seed)
    weights = imbalance ** (-np.arange(num_classes) / max(1, num_classes - 1))
    weights /= weights.sum()
    colours = rng.integers(40, 256, size=(num_classes, 3))
    shapes = [SHAPES[c % len(SHAPES)] for c in range(num_classes)]
    photos = _background_source() if backgrounds else None
    assigned: list[list[int]] | None = None
    if image_counts is not None:
        weights = np.asarray(image_counts, dtype=float) + 1e-9
        weights /= weights.sum()
        assigned = [[] for _ in range(num_train)]
        for c, n in enumerate(image_counts):
            for i in rng.choice(num_train, size=int(n), replace=False):
                assigned[int(i)].append(c)
        assigned = [[int(c) for c in rng.permutation(classes)] for classes in assigned]
    uniform = np.full(num_classes, 1.0 / num_classes)
    paths = {}
    splits = (("train", num_train, 0), ("val", num_val, num_train + num_empty))
    for split, count, offset in splits:
        folder = root / f"{split}2017"
        folder.mkdir(parents=True, exist_ok=True)
        images, annotations = [], []
        for i in range(count + num_empty):
            image_id = offset + i + 1
            if photos is not None:
                canvas = _background(rng, photos, image_size)
            else:
                canvas = np.full((image_size, image_size, 3), 20, dtype=np.uint8)
                canvas += rng.integers(0, 20, size=canvas.shape, dtype=np.uint8)
            present = set()
            if assigned is not None and split == "train":
                guaranteed = assigned[i] if i < count else []
            else:
                guaranteed = (
                    [
                        c
                        for j in range(copies)
                        for c in range((i - j) % num_train, num_classes, num_train)
                    ]
                    if split == "train" and i < count
                    else []
                )
            if assigned is not None and split == "train":
                num_objects = len(guaranteed)
            else:
                num_objects = 0 if i >= count else int(rng.integers(1, max_objects + 1))
                num_objects = max(num_objects, len(guaranteed)) if i < count else 0
            size = min(1.0, math.sqrt(max_objects / max(num_objects, 1)))
            probs = uniform if balanced_val and split == "val" else weights
            boxes: list[list[float]] = []
            for j in range(num_objects):
                if j < len(guaranteed):
                    c = guaranteed[j]  # every class has at least one training instance
                    if assigned is None:
                        rng.choice(num_classes, p=probs)  # keeps the default files unchanged
                else:
                    c = int(rng.choice(num_classes, p=probs))
                for _ in range(20 if max_overlap is not None else 1):
                    w, h = rng.uniform(*object_scale, size=2) * image_size * size
                    x, y = rng.uniform(0, image_size - w), rng.uniform(0, image_size - h)
                    if max_overlap is None or all(
                        _iou((x, y, w, h), b) <= max_overlap for b in boxes
                    ):
                        break
                boxes.append([x, y, w, h])
                poly = _polygon(shapes[c], x, y, w, h)
                pts = np.array(poly, dtype=np.float32).reshape(-1, 2).round().astype(np.int32)
                colour = colours[c]
                if colour_jitter:
                    jitter = rng.integers(-colour_jitter, colour_jitter + 1, size=3)
                    colour = np.clip(colour + jitter, 0, 255)
                cv2.fillPoly(canvas, [pts], tuple(int(v) for v in colour))
                xs, ys = poly[0::2], poly[1::2]
                box = [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)]
                annotations.append(
                    {
                        "id": len(annotations) + 1 + offset * max_objects,
                        "image_id": image_id,
                        "category_id": c + 1,
                        "bbox": [round(v, 2) for v in box],
                        "area": round(_polygon_area(poly), 2),
                        "segmentation": [poly],
                    }
                )
                present.add(c + 1)
            name = f"{image_id:012d}.jpg"
            cv2.imwrite(str(folder / name), canvas)
            absent = [c for c in range(1, num_classes + 1) if c not in present]
            images.append(
                {
                    "id": image_id,
                    "width": image_size,
                    "height": image_size,
                    "coco_url": f"http://images.cocodataset.org/{split}2017/{name}",
                    "neg_category_ids": absent[:3],
                    "not_exhaustive_category_ids": [],
                }
            )
        paths[split] = (images, annotations)
    train_images, train_anns = paths["train"]
    image_counts = {
        c: len({a["image_id"] for a in train_anns if a["category_id"] == c})
        for c in range(1, num_classes + 1)
    }
    instance_counts = {
        c: sum(a["category_id"] == c for a in train_anns) for c in range(1, num_classes + 1)
    }
    categories = [
        {
            "id": c,
            "name": categories[c - 1]["name"] if categories else f"{shapes[c - 1]}_{c}",
            "synset": f"toy.n.{c:02d}",
            "frequency": categories[c - 1]["frequency"]
            if categories
            else _frequency(image_counts[c]),
            "image_count": image_counts[c],
            "instance_count": instance_counts[c],
        }
        for c in range(1, num_classes + 1)
    ]
    out = {}
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    for split, (images, anns) in paths.items():
        path = root / "annotations" / f"lvis_v1_{split}.json"
        path.write_text(
            json.dumps({"images": images, "annotations": anns, "categories": categories})
        )
        out[split] = path
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default="data/toy_lvis")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--variant", choices=("demo", "hard"), default="demo", help="hard: HARD_VARIANT"
    )
    args = parser.parse_args(argv)
    make = make_hard_toy_lvis if args.variant == "hard" else make_toy_lvis
    paths = make(args.root, seed=args.seed)
    print("\n".join(f"{split}: {path}" for split, path in paths.items()))


if __name__ == "__main__":
    main()
