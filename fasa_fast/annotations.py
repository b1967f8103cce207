"""Per-class training instance counts read from a dataset's annotation file.

LVIS files carry ``instance_count`` (and ``image_count``, ``frequency``) per category; for
COCO-style files (COCO-LT and others) the annotations are counted. Classes are indexed in the
order of ascending category id, which is the order MMDetection's COCO/LVIS datasets use for
their label indices.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import torch


@dataclass(frozen=True)
class ClassCounts:
    """Category ids, names and training instance counts, in label-index order."""

    category_ids: tuple[int, ...]
    names: tuple[str, ...]
    instance_counts: torch.Tensor  # [C] int64
    frequency: tuple[str, ...] | None = None  # LVIS 'r' / 'c' / 'f' per class, when given

    @property
    def num_classes(self) -> int:
        return len(self.category_ids)

    def display_names(self) -> tuple[str, ...]:
        """``"'name' (id N)"`` per class: how every message names a class."""
        return tuple(
            f"{name!r} (id {i})" for name, i in zip(self.names, self.category_ids, strict=True)
        )


def class_counts_from_annotations(source: str | Path | dict) -> ClassCounts:
    """Read per-class instance counts from an LVIS or COCO-style annotation file (or its dict).

    Uses each category's ``instance_count`` when every category has one (LVIS); otherwise
    counts the ``annotations`` per ``category_id`` (COCO style). Raises ``ValueError`` when
    neither is available, when categories repeat an id, or when an annotation names an unknown
    category.
    """
    data = source if isinstance(source, dict) else json.loads(Path(source).read_text())
    where = "the annotation dict" if isinstance(source, dict) else str(source)
    categories = data.get("categories")
    if not categories:
        raise ValueError(f"{where}: no 'categories' list, cannot tell the classes")
    categories = sorted(categories, key=lambda c: c["id"])
    ids = [int(c["id"]) for c in categories]
    if len(set(ids)) != len(ids):
        raise ValueError(f"{where}: category ids repeat")
    if all("instance_count" in c for c in categories):
        counts = [int(c["instance_count"]) for c in categories]
    elif "annotations" in data:
        known = set(ids)
        tally = Counter(int(a["category_id"]) for a in data["annotations"])
        unknown = set(tally) - known
        if unknown:
            raise ValueError(
                f"{where}: annotations name unknown category ids {sorted(unknown)[:5]}"
            )
        counts = [tally.get(i, 0) for i in ids]
    else:
        raise ValueError(
            f"{where}: categories carry no 'instance_count' and there are no 'annotations' to "
            "count: FASA needs per-class training instance counts"
        )
    frequency = None
    if all("frequency" in c for c in categories):
        frequency = tuple(str(c["frequency"]) for c in categories)
    return ClassCounts(
        category_ids=tuple(ids),
        names=tuple(str(c.get("name", c["id"])) for c in categories),
        instance_counts=torch.tensor(counts, dtype=torch.int64),
        frequency=frequency,
    )
