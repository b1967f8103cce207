"""The README's main command (the MMDetection demo) runs end to end in a short mode."""

from __future__ import annotations

from fasa_fast.mmdet import demo


def test_demo_short_mode(tmp_path, capsys):
    metrics = demo.main(
        [
            "--data-root",
            str(tmp_path / "toy"),
            "--work-dir",
            str(tmp_path / "work"),
            "--epochs",
            "1",
            "--num-train",
            "40",
        ]
    )
    out = capsys.readouterr().out
    assert "AP" in out and "APr" in out and "fasa_probabilities.png" in out
    assert {"lvis/bbox_AP", "lvis/segm_APr", "lvis/segm_APf"} <= set(metrics)
    assert (tmp_path / "work" / "fasa_probabilities.png").is_file()
