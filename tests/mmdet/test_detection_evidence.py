"""benchmarks/detection_evidence.py: the baseline and FASA runs differ only in the method, the
summary and paired differences are computed right, and the command runs end to end (tiny)."""

from __future__ import annotations

import json
import os
import statistics
from types import SimpleNamespace

import pytest

from benchmarks import detection_evidence as de
from fasa_fast.mmdet.toy_lvis import make_hard_toy_lvis


def _runs(values: dict[tuple[str, int], float]) -> list[dict]:
    runs = []
    for (method, seed), v in values.items():
        metrics = {key: v + i / 100 for i, key in enumerate(de.KEYS)}
        metrics["bbox_APf"] = None if seed == 2 else metrics["bbox_APf"]
        runs.append({"method": method, "seed": seed, "metrics": metrics})
    return runs


def test_summary_and_paired_differences_by_hand():
    values = {
        ("baseline", 0): 0.10,
        ("fasa", 0): 0.15,
        ("baseline", 1): 0.20,
        ("fasa", 1): 0.18,
        ("baseline", 2): 0.30,
        ("fasa", 2): 0.40,
        ("fasa", 3): 0.90,  # no baseline for seed 3: in the fasa mean, not in the pairs
    }
    summary, paired = de.summarise(_runs(values))
    ap = summary["baseline"]["bbox_AP"]
    assert ap["n"] == 3 and ap["mean"] == pytest.approx(0.2)
    assert ap["std"] == pytest.approx(0.1)  # sample std (n - 1)
    assert summary["fasa"]["bbox_AP"]["mean"] == pytest.approx((0.15 + 0.18 + 0.4 + 0.9) / 4)
    diffs = [0.05, -0.02, 0.10]
    assert list(paired) == ["fasa − baseline"]
    pair = paired["fasa − baseline"]
    assert pair["bbox_AP"]["per_seed"] == pytest.approx({"0": 0.05, "1": -0.02, "2": 0.10})
    assert pair["bbox_AP"]["mean"] == pytest.approx(statistics.fmean(diffs))
    assert pair["bbox_AP"]["std"] == pytest.approx(statistics.stdev(diffs))
    assert pair["segm_APf"]["mean"] == pytest.approx(statistics.fmean(diffs))
    # a group the metric could not measure (None) drops out of that seed's pair only
    assert pair["bbox_APf"]["per_seed"]["2"] is None and pair["bbox_APf"]["n"] == 2
    assert summary["baseline"]["bbox_APf"]["n"] == 2
    table = de.markdown_table(summary, paired)
    assert "| baseline (n=3) | 0.200 ± 0.100 |" in table
    assert "| fasa − baseline (paired) | +0.043 ± 0.060 |" in table


def test_baseline_and_fasa_configs_differ_only_in_the_method(tmp_path):
    make_hard_toy_lvis(tmp_path / "data", num_train=20, num_val=4, image_size=64)
    cfgs = {
        m: de.build_config(m, 7, tmp_path / "data", tmp_path / "w", 3).to_dict() for m in de.METHODS
    }
    base, fasa = cfgs["baseline"], cfgs["fasa"]
    assert base["model"]["roi_head"]["bbox_head"]["type"] == "Shared2FCBBoxHead"
    assert "fasa" not in base["model"]["roi_head"]["bbox_head"]
    assert fasa["model"]["roi_head"]["bbox_head"]["type"] == "FASAShared2FCBBoxHead"
    assert base["custom_hooks"] == []
    assert [h["type"] for h in fasa["custom_hooks"]] == ["FASAHook"]
    assert fasa["custom_hooks"][0]["max_images"] is None
    for cfg in (base, fasa):
        assert cfg["randomness"] == {"seed": 7}
        assert cfg["model"]["roi_head"]["bbox_head"]["num_classes"] == 40
        assert cfg["model"]["roi_head"]["mask_head"]["num_classes"] == 40
        train = cfg["train_dataloader"]["dataset"]
        assert train["type"] == "FASAHeldOutSplit" and train["split"] == "train"
        assert {k: train[k] for k in de.SPLIT} == de.SPLIT
        assert cfg["train_cfg"]["max_epochs"] == 3
    for cfg in (base, fasa):
        cfg.pop("custom_hooks")
        cfg["model"]["roi_head"]["bbox_head"].pop("type")
        cfg["model"]["roi_head"]["bbox_head"].pop("fasa", None)
    assert base == fasa
    with pytest.raises(
        ValueError, match="method: expected 'baseline', 'fasa' or 'fasa-<grouping>'"
    ):
        de.build_config("other", 0, tmp_path / "data", tmp_path / "w", 3)
    # a grouping variant differs from fasa in the grouping only; checkpoints on request
    single = de.build_config("fasa-single", 7, tmp_path / "data", tmp_path / "w", 3, True)
    single = single.to_dict()
    assert single["model"]["roi_head"]["bbox_head"]["fasa"].pop("grouping") == "single"
    assert single["default_hooks"].pop("checkpoint") == {
        "type": "CheckpointHook", "interval": 1, "max_keep_ckpts": -1
    }  # fmt: skip
    again = de.build_config("fasa", 7, tmp_path / "data", tmp_path / "w", 3).to_dict()
    assert again["model"]["roi_head"]["bbox_head"]["fasa"].pop("grouping") == "hdbscan"
    again["default_hooks"].pop("checkpoint")
    assert single == again


def test_comparisons_and_the_probability_table():
    assert de.comparisons(["baseline", "fasa", "fasa-single"]) == [
        ("fasa", "baseline"), ("fasa-single", "baseline"), ("fasa", "fasa-single")
    ]  # fmt: skip
    assert de.comparisons(["fasa-single", "fasa-dbscan"]) == []
    history = [{"epoch": 3, "fasa/p_rare": 0.1, "fasa/p_common": 0.02, "fasa/p_frequent": 0.01}]
    grouping = [{"epoch": 3, "num_groups": 4, "largest_group_share": 0.5}]
    runs = [
        {"method": "fasa", "seed": 0, "fasa_history": history, "fasa_grouping_history": grouping},
        {"method": "fasa", "seed": 1, "fasa_history": [dict(history[0], **{"fasa/p_rare": 0.3})]},
        {"method": "baseline", "seed": 0},
    ]
    table = de.probability_table(runs).splitlines()
    assert table[2:] == ["| fasa | 3 | 0.2000 | 0.0200 | 0.0100 | 4 | 50% |"], table


@pytest.mark.slow
def test_tiny_run_writes_runs_summary_and_paired_differences(tmp_path, capsys):
    out = tmp_path / "result.json"
    argv = ["--tiny", "--seeds", "3", "--num-train", "16", "--num-val", "6"]
    argv += ["--work-dir", str(tmp_path / "work"), "--out", str(out), "--commit", "abc123"]
    result = de.main(argv)
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    assert result["commit"] == result["commit_at_end"] == "abc123"
    assert result["date"] and result["machine"]["cpu_count"] == os.cpu_count()
    assert result["command"].endswith(" ".join(argv))
    assert result["setup"]["epochs"] == 1 and result["setup"]["seeds"] == [3]
    runs = {(r["method"], r["seed"]): r for r in result["runs"]}
    assert set(runs) == {("baseline", 3), ("fasa", 3)}
    for run in runs.values():
        assert set(run["metrics"]) == set(de.KEYS)
        assert all(v is None or 0.0 <= v <= 1.0 for v in run["metrics"].values())
        assert run["train_images"] == runs[("fasa", 3)]["train_images"] < 16  # same, held out
    for key in de.KEYS:
        a, b = runs[("fasa", 3)]["metrics"][key], runs[("baseline", 3)]["metrics"][key]
        diff = result["paired_differences"]["fasa − baseline"][key]
        assert diff["per_seed"]["3"] == (None if a is None or b is None else a - b)
        assert diff["mean"] == diff["per_seed"]["3"] and diff["std"] is None
        for method in de.METHODS:
            stat = result["summary"][method][key]
            assert stat["mean"] == runs[(method, 3)]["metrics"][key] and stat["std"] is None
    # the FASA run trained with FASA, the baseline without (the logs hold the runs' configs)
    logs = {m: (tmp_path / "work" / f"{m}_seed3.log").read_text() for m in de.METHODS}
    for name in ("FASAShared2FCBBoxHead", "FASAHook"):
        assert name in logs["fasa"] and name not in logs["baseline"]
    assert "| fasa − baseline (paired) |" in capsys.readouterr().out


def test_skip_done_takes_finished_runs_and_trains_none_of_them(tmp_path, monkeypatch):
    import fasa_fast.mmdet.toy_lvis as toy_lvis

    monkeypatch.setattr(toy_lvis, "make_hard_toy_lvis", lambda root, **kwargs: None)
    # no run is started (platform's own subprocess calls stay real)
    launcher = SimpleNamespace(
        Popen=lambda *a, **k: pytest.fail("trained a run"),
        run=de.subprocess.run,
        CalledProcessError=de.subprocess.CalledProcessError,
    )
    monkeypatch.setattr(de, "subprocess", launcher)
    work = tmp_path / "work"
    runs = _runs({("baseline", 0): 0.1, ("fasa", 0): 0.2, ("fasa-single", 0): 0.15})
    for run in runs:
        (work / f"{run['method']}_seed0").mkdir(parents=True)
        (work / f"{run['method']}_seed0" / "metrics.json").write_text(json.dumps(run))
    argv = ["--seeds", "0", "--methods", "baseline", "fasa", "fasa-single", "--skip-done"]
    result = de.main(argv + ["--work-dir", str(work), "--commit", "abc"])
    assert result["setup"]["skipped_done_runs"] == [
        "baseline seed 0", "fasa seed 0", "fasa-single seed 0"
    ]  # fmt: skip
    assert [(r["method"], r["seed"]) for r in result["runs"]] == [
        ("baseline", 0), ("fasa", 0), ("fasa-single", 0)
    ]  # fmt: skip
    assert list(result["paired_differences"]) == [
        "fasa − baseline", "fasa-single − baseline", "fasa − fasa-single"
    ]  # fmt: skip
    pair = result["paired_differences"]["fasa − fasa-single"]["bbox_AP"]
    assert pair["mean"] == pytest.approx(0.05)
