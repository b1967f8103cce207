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


# ---- what the figures show: the drawn figure, read back before it is closed --------------------
def drawn_figures(monkeypatch) -> list:
    """Records every figure the reporting functions close (they close each after saving)."""
    need("matplotlib")
    plt = reporting._pyplot()
    figures = []
    close = plt.close
    monkeypatch.setattr(plt, "close", lambda fig: (figures.append(fig), close(fig)))
    return figures


def png_size(path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def laid_out(fig) -> bool:
    """tight_layout moves the axes off matplotlib's default margins."""
    import matplotlib

    default = matplotlib.rcParams["figure.subplot.left"]
    return abs(fig.axes[0].get_position().x0 - default) > 1e-3


def test_probability_history_figure(tmp_path, monkeypatch):
    figures = drawn_figures(monkeypatch)
    history = [{"epoch": 1, "b": 0.2, "a": 0.9}, {"epoch": 2, "a": 0.8}]
    path = tmp_path / "p.png"
    reporting.plot_probability_history(history, path)
    (fig,) = figures
    ax = fig.axes[0]
    assert (ax.get_xlabel(), ax.get_ylabel(), ax.get_title()) == (
        "epoch",
        "mean sampling probability",
        "FASA sampling probabilities",
    )
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert sorted(lines) == ["a", "b"]
    assert lines["a"].get_xdata().tolist() == [1, 2]
    assert lines["a"].get_ydata().tolist() == [0.9, 0.8]
    assert {line.get_marker() for line in lines.values()} == {"o"}
    legend = ax.get_legend()
    assert [t.get_text() for t in legend.get_texts()] == ["a", "b"]
    assert {t.get_fontsize() for t in legend.get_texts()} == {7.0}
    assert tuple(fig.get_size_inches()) == (6.0, 4.0)
    assert png_size(path) == (720, 480), "6 x 4 inches at 120 dpi"
    assert laid_out(fig)


def test_weight_norm_figure(tmp_path, monkeypatch):
    figures = drawn_figures(monkeypatch)
    path = tmp_path / "w.png"
    weight = torch.tensor([[3.0, 4.0], [1.0, 0.0], [0.0, 2.0]])
    reporting.plot_weight_norms(weight, torch.tensor([10, 500, 40]), path)
    (fig,) = figures
    ax = fig.axes[0]
    assert (ax.get_xlabel(), ax.get_ylabel(), ax.get_title()) == (
        "classes, most to least frequent",
        "classifier weight norm",
        "fc_cls weight norms",
    )
    (line,) = ax.get_lines()
    assert line.get_ydata().tolist() == pytest.approx([1.0, 2.0, 5.0])
    assert tuple(fig.get_size_inches()) == (6.0, 4.0)
    assert png_size(path) == (720, 480), "6 x 4 inches at 120 dpi"
    assert laid_out(fig)


def test_figures_are_drawn_off_screen():
    # whatever backend the process had chosen (a display one on a desktop; pdf here, which any
    # matplotlib has), the figures are drawn with Agg, into files only
    need("matplotlib")
    import matplotlib

    previous = matplotlib.get_backend()
    matplotlib.use("pdf")
    try:
        reporting._pyplot()
        assert matplotlib.get_backend().lower() == "agg"
    finally:
        matplotlib.use(previous)
