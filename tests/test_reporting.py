"""``fasa_fast.reporting``: group means by hand, and what the two figures draw."""

from __future__ import annotations

import pytest
import torch

from fasa_fast import reporting
from tests.backends import need


def test_group_means_by_hand():
    prob = torch.tensor([0.9, 0.7, 0.2, 0.4, 0.05, 0.5])
    frequency = ["r", "r", "c", "c", "f", "r"]
    got = reporting.group_means(prob, frequency)
    assert got == pytest.approx({"rare": (0.9 + 0.7 + 0.5) / 3, "common": 0.3, "frequent": 0.05})
    assert list(got) == ["rare", "common", "frequent"]


def test_group_means_leaves_out_empty_groups_and_handles_no_labels():
    prob = torch.tensor([0.25, 0.75])
    assert reporting.group_means(prob, ["f", "f"]) == pytest.approx({"frequent": 0.5})
    assert reporting.group_means(prob, None) == pytest.approx({"all": 0.5})
    with pytest.raises(ValueError, match=r"frequency: expected one label per class \(2\), got 3"):
        reporting.group_means(prob, ["r", "c", "f"])


def test_probability_history_plot(tmp_path):
    need("matplotlib")
    history = [
        {"epoch": 1, "fasa/p_rare": 0.9, "fasa/p_common": 0.3},
        {"epoch": 2, "fasa/p_rare": 0.8},
        {"epoch": 3, "fasa/p_rare": 0.7, "fasa/p_common": 0.35},
    ]
    path = tmp_path / "p.png"
    lines = reporting.plot_probability_history(history, path)
    assert lines == {
        "fasa/p_common": [(1, 0.3), (3, 0.35)],
        "fasa/p_rare": [(1, 0.9), (2, 0.8), (3, 0.7)],
    }
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_weight_norm_plot_orders_classes_by_frequency(tmp_path):
    need("matplotlib")
    weight = torch.tensor([[3.0, 4.0], [1.0, 0.0], [0.0, 2.0]])  # norms 5, 1, 2
    counts = torch.tensor([10.0, 500.0, 40.0])  # most frequent: class 1, then 2, then 0
    path = tmp_path / "w.png"
    norms = reporting.plot_weight_norms(weight, counts, path)
    assert norms.tolist() == pytest.approx([1.0, 2.0, 5.0])
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match=r"weight: expected one row per class \(3\)"):
        reporting.plot_weight_norms(weight[:2], counts, path)
