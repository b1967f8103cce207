"""A small, deterministic long-tailed instance-segmentation dataset in LVIS v1 format.

Each class is a filled shape (rectangle, ellipse or triangle) of its own colour; class
frequencies fall off exponentially, so a few classes are frequent and most are rare. Images
are written as JPEG files under ``<root>/train2017`` and ``<root>/val2017``; annotations in LVIS
v1 layout under ``<root>/annotations/lvis_v1_{train,val}.json``: categories with ``frequency``
(LVIS's rule on image counts: rare <= 10, common 11-100, frequent > 100), ``image_count`` and
``instance_count``; images with ``coco_url`` (what MMDetection's LVISV1Dataset reads),
``neg_category_ids`` and ``not_exhaustive_category_ids``; instances with boxes, polygon masks
and areas. Nothing is downloaded; the same arguments give the same files.

Run: ``python -m fasa_fast.mmdet.toy_lvis --root data/toy_lvis``
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np

SHAPES = ("rectangle", "ellipse", "triangle")


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
) -> dict[str, Path]:
    """Write the dataset under ``root``; returns the paths of the two annotation files.

    Every class gets at least ``copies`` training images: training image ``i`` starts with one
    object of each class ``c`` with ``c = i - j (mod num_train)`` for ``j < copies`` (so with more
    classes than training images, images carry several guaranteed objects, drawn smaller). ``num_empty``
    images without any object are added to each split, as LVIS has them. ``categories``
    (``num_classes`` dicts with ``name`` and ``frequency``, e.g. LVIS v1's own) replaces the
    generated names and the frequency groups derived from the generated image counts.
    """
    if num_train < 1 or num_classes < 1:
        raise ValueError(f"num_train, num_classes: expected >= 1, got {num_train}, {num_classes}")
    if not 1 <= copies <= num_train:
        raise ValueError(f"copies: expected 1 <= copies <= num_train={num_train}, got {copies}")
    if categories is not None and len(categories) != num_classes:
        raise ValueError(
            f"categories: expected num_classes={num_classes} entries, got {len(categories)}"
        )
    import cv2

    root = Path(root)
    rng = np.random.default_rng(seed)
    weights = imbalance ** (-np.arange(num_classes) / max(1, num_classes - 1))
    weights /= weights.sum()
    colours = rng.integers(40, 256, size=(num_classes, 3))
    shapes = [SHAPES[c % len(SHAPES)] for c in range(num_classes)]
    paths = {}
    splits = (("train", num_train, 0), ("val", num_val, num_train + num_empty))
    for split, count, offset in splits:
        folder = root / f"{split}2017"
        folder.mkdir(parents=True, exist_ok=True)
        images, annotations = [], []
        for i in range(count + num_empty):
            image_id = offset + i + 1
            canvas = np.full((image_size, image_size, 3), 20, dtype=np.uint8)
            canvas += rng.integers(0, 20, size=canvas.shape, dtype=np.uint8)
            present = set()
            guaranteed = (
                [
                    c
                    for j in range(copies)
                    for c in range((i - j) % num_train, num_classes, num_train)
                ]
                if split == "train" and i < count
                else []
            )
            num_objects = 0 if i >= count else int(rng.integers(1, max_objects + 1))
            num_objects = max(num_objects, len(guaranteed)) if i < count else 0
            size = min(1.0, math.sqrt(max_objects / max(num_objects, 1)))
            for j in range(num_objects):
                c = int(rng.choice(num_classes, p=weights))
                if j < len(guaranteed):
                    c = guaranteed[j]  # every class has at least one training instance
                w, h = rng.uniform(0.2, 0.45, size=2) * image_size * size
                x, y = rng.uniform(0, image_size - w), rng.uniform(0, image_size - h)
                poly = _polygon(shapes[c], x, y, w, h)
                pts = np.array(poly, dtype=np.float32).reshape(-1, 2).round().astype(np.int32)
                cv2.fillPoly(canvas, [pts], tuple(int(v) for v in colours[c]))
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
    args = parser.parse_args(argv)
    paths = make_toy_lvis(args.root, seed=args.seed)
    print("\n".join(f"{split}: {path}" for split, path in paths.items()))


if __name__ == "__main__":
    main()
