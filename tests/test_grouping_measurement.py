"""benchmarks/grouping_measurement.py: each measured number is what the grouping rule gives on
the statistics it read (learned in the run, saved in a checkpoint, simulated), and the command
runs end to end in a small mode."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from sklearn.metrics import adjusted_rand_score

from benchmarks import grouping_measurement as gm
from fasa_fast.grouping import group_classes
from tests.cases import LEARNED_STATISTICS as FIXTURE


def test_describe_counts_groups_shares_and_ari_by_hand():
    groups = torch.tensor([0, 0, 0, 1, -1, 2, 3])  # 6 grouped classes: sizes 3, 1, 1, 1
    row = gm.describe(groups, np.array([5, 5, 5, 6, 7, 7]), 0.25)
    assert row["groups"] == 4 and row["largest_share"] == 0.5
    assert row["singleton_share"] == 0.5 and row["seconds"] == 0.25
    assert row["ari"] == pytest.approx(adjusted_rand_score([5, 5, 5, 6, 7, 7], [0, 0, 0, 1, 2, 3]))


def test_command_measures_learned_saved_and_simulated_statistics(tmp_path, capsys):
    state = torch.load(FIXTURE, weights_only=True)
    prefix = "roi_head.bbox_head.fasa"
    checkpoint = tmp_path / "epoch_3.pth"
    torch.save(
        {"state_dict": {f"{prefix}.{k}": state[k] for k in ("mean", "std", "seen")}}, checkpoint
    )
    out = tmp_path / "grouping.json"
    argv = ["--seeds", "0", "--datasets", "digits-lt", "--epochs", "3", "--spreads", "0.3"]
    argv += ["--sim-dim", "8", "--checkpoints", str(checkpoint), "--out", str(out)]
    result = gm.main(argv)
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    # (b): 3 epochs, warm-up 1: two adaptations measured, every rule on each
    digits = result["digits-lt"]
    assert [r["adaptation"] for r in digits] == [0, 1] and digits[0]["adaptations"] == 2
    assert all(set(r["rules"]) == {label for label, _, _ in gm.RULES} for r in digits)
    # (c): the checkpoint's statistics, grouped again here by each rule
    (row,) = result["checkpoints"]
    assert row["head"] == prefix
    for label, method, params in gm.RULES:
        groups = group_classes(state["mean"], state["std"], state["seen"], method, **params)
        assert row["rules"][label]["groups"] == len(groups.unique()), label
    # (d): ARI against the simulation's super-categories is present and in range
    (sim,) = result["lvis_simulation"]
    assert sim["spread"] == 0.3
    assert all(-1.0 <= x["ari"] <= 1.0 for x in sim["rules"].values())
    printed = capsys.readouterr().out
    assert (
        "| hdbscan (default) |" in printed
        and "(d) LVIS-scale simulation, C = 1203, D = 8" in printed
    )
