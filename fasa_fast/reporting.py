"""Summaries and plots of FASA's sampling probabilities, independent of the training framework.

``fasa_fast.mmdet.FASAHook`` logs ``group_means`` every epoch and draws the two figures at the
end of training; any other trainer can call them the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

# LVIS frequency groups: 'r' (1-10 training images), 'c' (11-100), 'f' (more)
FREQUENCY_GROUPS = {"r": "rare", "c": "common", "f": "frequent"}


def group_means(prob: torch.Tensor, frequency: Sequence[str] | None) -> dict[str, float]:
    """Mean sampling probability per frequency group (``{'rare': ..., ...}``; groups without
    a class are left out), or ``{'all': mean}`` when the classes have no frequency labels."""
    prob = prob.detach().float().cpu()
    if frequency is None:
        return {"all": prob.mean().item()}
    if len(frequency) != prob.shape[0]:
        raise ValueError(
            f"frequency: expected one label per class ({prob.shape[0]}), got {len(frequency)}"
        )
    out = {}
    for key, name in FREQUENCY_GROUPS.items():
        members = [i for i, f in enumerate(frequency) if f == key]
        if members:
            out[name] = prob[members].mean().item()
    return out


def plot_probability_history(
    history: Sequence[dict], path: str | Path
) -> dict[str, list[tuple[int, float]]]:
    """Mean probability per group over epochs (the paper's Fig. 3): ``history`` is a list of
    ``{'epoch': e, '<series>': value, ...}`` records, one line per series. Returns the lines
    drawn, ``{series: [(epoch, value), ...]}``."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    keys = sorted({k for rec in history for k in rec if k != "epoch"})
    lines = {}
    for key in keys:
        points = [(rec["epoch"], rec[key]) for rec in history if key in rec]
        lines[key] = points
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=key)
    ax.set(xlabel="epoch", ylabel="mean sampling probability", title="FASA sampling probabilities")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return lines


def plot_weight_norms(
    weight: torch.Tensor, instance_counts: torch.Tensor, path: str | Path
) -> torch.Tensor:
    """Per-class norms of the classifier's weight rows, classes from most to least frequent
    (the paper's Fig. 4). ``weight``: ``[C, D]`` (background rows already cut off). Returns
    the norms in the order drawn."""
    if weight.shape[0] != instance_counts.shape[0]:
        raise ValueError(
            f"weight: expected one row per class ({instance_counts.shape[0]}), got "
            f"{tuple(weight.shape)}"
        )
    plt = _pyplot()
    order = torch.argsort(instance_counts.detach().cpu(), descending=True)
    norms = weight.detach().float().cpu().norm(dim=1)[order]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(norms.numpy())
    ax.set(
        xlabel="classes, most to least frequent",
        ylabel="classifier weight norm",
        title="fc_cls weight norms",
    )
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return norms


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt
