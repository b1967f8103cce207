"""Small LVIS-format annotation files written by the tests."""

from __future__ import annotations

import json


def tiny_lvis(tmp_path):
    """Two images, two categories, one box each; detections equal to the ground truth."""
    categories = [
        {"id": 1, "name": "a", "frequency": "r", "image_count": 1, "instance_count": 1},
        {"id": 2, "name": "b", "frequency": "f", "image_count": 1, "instance_count": 1},
    ]
    images = [
        {
            "id": i,
            "width": 64,
            "height": 64,
            "neg_category_ids": [],
            "not_exhaustive_category_ids": [],
        }
        for i in (1, 2)
    ]
    boxes = {1: [4.0, 4.0, 20.0, 20.0], 2: [30.0, 10.0, 16.0, 24.0]}
    anns = [
        {"id": i, "image_id": i, "category_id": i, "bbox": boxes[i], "area": boxes[i][2] * boxes[i][3],
         "segmentation": [[boxes[i][0], boxes[i][1], boxes[i][0] + boxes[i][2], boxes[i][1],
                           boxes[i][0] + boxes[i][2], boxes[i][1] + boxes[i][3]]]}
        for i in (1, 2)
    ]  # fmt: skip
    gt = tmp_path / "gt.json"
    gt.write_text(json.dumps({"images": images, "annotations": anns, "categories": categories}))
    dets = [{"image_id": i, "category_id": i, "bbox": boxes[i], "score": 0.9} for i in (1, 2)]
    return str(gt), dets
