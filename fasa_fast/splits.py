"""Which training images to hold out for FASA's adaptation pass (framework-free).

The adaptation step (``FASA.adapt``) can only move the probability of a class whose group has
adaptation data. On a long-tailed set a random held-out sample misses almost every rare class
(at LVIS v1 scale a random 1000 images hold about 15 of the 337 rare classes, see
``docs/reports/adaptation_coverage.md``), so the default here is chosen for class coverage:

- ``"coverage"``: classes are visited from the fewest training images to the most; a class with
  at least ``min_class_images`` images and no held-out image yet gets one of its images held
  out: the one that covers the most still-uncovered classes (ties broken by a seeded order).
  The budget left after that is filled with seeded random images, so frequent classes get a
  sample of ordinary images too. No image is ever held out that would take a class's last
  training image (a class never trained on is never seen, sampled or steered). The price is paid
  by the rarest classes: a class with two training images trains on one. Classes with fewer
  than ``min_class_images`` images keep all of theirs (they can still move with their group,
  see ``FASA.adapt``).
- ``"random"``: a seeded random sample of ``budget`` images.

Neither holds out an image without any object: it carries no per-class loss. Both are
deterministic for a given ``seed``, so the split is the same in every run and on every
rank, and the adaptation pass compares like with like from one epoch to the next.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

STRATEGIES = ("coverage", "random")


def held_out_indices(
    image_classes: Sequence[Sequence[int]],
    budget: int,
    *,
    strategy: str = "coverage",
    min_class_images: int = 2,
    seed: int = 0,
) -> list[int]:
    """Indices (sorted) of at most ``budget`` images to hold out.

    Args:
        image_classes: for every image, the classes it contains (any hashable ids; repeats ok).
        budget: images to hold out at most (``>= 0``).
        strategy: ``"coverage"`` or ``"random"`` (see the module docstring).
        min_class_images: with ``"coverage"``, classes with fewer training images than this
            are never given a held-out image of their own (``>= 2``: a class keeps at least one).
        seed: seed of the orders used for ties and for the random fill.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy: expected one of {STRATEGIES}, got {strategy!r}")
    if budget < 0:
        raise ValueError(f"budget: expected >= 0, got {budget}")
    if min_class_images < 2:
        raise ValueError(f"min_class_images: expected >= 2, got {min_class_images}")
    total = len(image_classes)
    order = torch.randperm(total, generator=torch.Generator().manual_seed(seed)).tolist()
    budget = min(budget, total)
    # an image without any class carries no per-class loss: never hold one out
    order = [image for image in order if image_classes[image]]
    if strategy == "random":
        return sorted(order[:budget])

    rank = {image: position for position, image in enumerate(order)}  # seeded tie-break
    images_of: dict = {}
    for image, classes in enumerate(image_classes):
        for c in set(classes):
            images_of.setdefault(c, []).append(image)
    left = {c: len(images) for c, images in images_of.items()}  # training images left

    def can_hold(image: int) -> bool:
        return all(left[c] > 1 for c in set(image_classes[image]))

    def hold(image: int) -> None:
        chosen.add(image)
        for c in set(image_classes[image]):
            left[c] -= 1
        uncovered.difference_update(image_classes[image])

    uncovered = {c for c, images in images_of.items() if len(images) >= min_class_images}
    chosen: set[int] = set()
    for c in sorted(uncovered, key=lambda c: (len(images_of[c]), str(c))):
        if len(chosen) >= budget:
            break
        if c not in uncovered:
            continue  # an image held out for a rarer class covers it already
        candidates = [i for i in images_of[c] if i not in chosen and can_hold(i)]
        if candidates:
            best = max(
                candidates,
                key=lambda i: (len(uncovered.intersection(image_classes[i])), -rank[i]),
            )
            hold(best)
    for image in order:  # the rest of the budget: ordinary images, in the seeded order
        if len(chosen) >= budget:
            break
        if image not in chosen and can_hold(image):
            hold(image)
    return sorted(chosen)


def fixed_sample(total: int, num_samples: int | None, seed: int = 0) -> list[int]:
    """Sorted indices of a seeded sample of ``num_samples`` of ``total`` items (all if None).

    The adaptation pass reads the same images every epoch (so consecutive passes compare like
    with like), spread over the whole set: a prefix of a dataset that repeats an image at
    adjacent indices (repeat factor sampling) would read few distinct images.
    """
    if num_samples is not None and num_samples < 1:
        raise ValueError(f"num_samples: expected >= 1 or None, got {num_samples}")
    if num_samples is None or num_samples >= total:
        return list(range(total))
    order = torch.randperm(total, generator=torch.Generator().manual_seed(seed))
    return sorted(order[:num_samples].tolist())
