"""Every command the README shows is run by some test: this module runs the small ones itself and
holds the map from each README command to the test that runs it, checked against the README."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.backends import need

REPO = Path(__file__).resolve().parents[1]

# README command (its start) -> where it runs. Commands that need a GPU or LVIS say so.
RUN_BY = {
    "make demo": "tests/mmdet/test_demo.py (the demo's short mode)",
    "make test": ".ci/run (CI) runs it on every submission",
    "make env": "make test's first step (scripts/setup_env.sh)",
    "make bench": "benchmarks/ in quick mode inside make test (same code, one round)",
    "make gpu-check": "needs a GPU: scripts/gpu_check.sh (its --dry mode runs in make test)",
    "make gpu-twin": "make test runs it (the Makefile's test target)",
    "make oldest": ".ci/run runs it after make test",
    "pip install --no-index --no-build-isolation --no-deps -e .": "scripts/gpu_check.sh, run by make gpu-twin",
    "make mutation": "tests/test_mutation_script.py runs its script on one module (the full runs take an hour or more on 2 cores: docs/reports/mutation.md)",
    "bash scripts/mutation.sh": "tests/test_mutation_script.py (one module; full runs: docs/reports/mutation.md)",
    "python -m fasa_fast.mmdet.demo": "tests/mmdet/test_demo.py",
    "python -m fasa_fast.examples.long_tailed_classification": "tests/test_examples.py",
    "python tools/train.py": "tests/mmdet/test_configs.py (every shipped config)",
    "python tools/test.py": "tests/mmdet/test_configs.py (every shipped config)",
    "torchrun --nproc_per_node 8 tools/train.py": "needs GPUs",
    "torchrun --nproc_per_node 2 tools/train.py": "tests/mmdet/test_distributed_runner.py (CPU, gloo, torchrun)",
    "python -m pytest benchmarks/test_bench_sync.py": "benchmarks/ in quick mode inside make test (same code, small shapes)",
    "python benchmarks/report.py": "test_benchmark_report_reads_the_committed_results (here)",
    "python benchmarks/profile_fasa_work.py": "test_profile_command_runs (here, on the CPU)",
    "python benchmarks/launch_budget.py": "test_launch_budget_command_runs (here, quick shapes)",
    "python -m pytest benchmarks/test_bench_detector.py": "benchmarks/ in quick mode inside make test (same code, one round)",
    "pip install -e . --no-build-isolation": "scripts/setup_env.sh, run by make test",
    "python -m benchmarks.detection_evidence": "tests/mmdet/test_detection_evidence.py (its --tiny mode)",
    "python -m benchmarks.grouping_measurement": "tests/test_grouping_measurement.py (one seed, 3 epochs, small D)",
    "pip install -e .": "tests/test_pip_install.py in a fresh venv over torch 2.1.2 (FASA_FAST_PIP_INSTALL_TESTS=1, make mainstream; not in CI yet)",
    "python -m fasa_fast.mmdet.toy_lvis": "test_toy_lvis_command_writes_both_splits (here)",
}


def readme_commands() -> list[str]:
    text = (REPO / "README.md").read_text()
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        for line in block.splitlines():
            line = line.split("#")[0].strip()
            if line:
                commands.append(line.replace(".venv/bin/", ""))
    commands += [
        c.replace(".venv/bin/", "") for c in re.findall(r"`((?:make|python|pip) [^`]+)`", text)
    ]
    return commands


def test_every_readme_command_is_run_somewhere():
    missing = [c for c in readme_commands() if not any(c.startswith(k) for k in RUN_BY)]
    assert not missing, (
        f"README commands that no test runs (add one, then a RUN_BY entry): {missing}"
    )


@pytest.mark.parametrize(
    "result",
    sorted((REPO / "benchmarks" / "results").glob("cpu-*.json"))
    + sorted((REPO / "benchmarks" / "results").glob("gpu-*/*.json")),
    ids=lambda p: f"{p.parent.name}/{p.name}",
)
def test_benchmark_report_reads_the_committed_results(result):
    out = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "report.py"), str(result)],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
    ).stdout
    assert "|" in out and len(out.splitlines()) > 3  # a markdown table with rows


def test_toy_lvis_command_writes_both_splits(tmp_path):
    need("mmdet")  # the generator lives in the mmdet glue
    out = subprocess.run(
        [sys.executable, "-m", "fasa_fast.mmdet.toy_lvis", "--root", str(tmp_path / "toy")],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
    ).stdout
    for split in ("train", "val"):
        assert (tmp_path / "toy" / "annotations" / f"lvis_v1_{split}.json").is_file()
        assert f"{split}:" in out


def test_profile_command_runs():
    out = subprocess.run(
        [sys.executable, "benchmarks/profile_fasa_work.py", "--device", "cpu", "--steps", "2"],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
    ).stdout
    assert "host time per step" in out and "fasa_fast::segmented_stats_update_" in out


def test_launch_budget_command_runs(tmp_path):
    out = tmp_path / "budget.json"
    subprocess.run(
        [sys.executable, "benchmarks/launch_budget.py", "--quick", "--paths", "engine",
         "--backends", "native,reference", "--steps", "2", "--json", str(out)],
        capture_output=True, text=True, check=True, cwd=REPO,
    )  # fmt: skip
    record = json.loads(out.read_text())
    engine = record["results"]["engine"]
    assert set(engine) == {"native", "reference"}, engine.keys()
    for backend, result in engine.items():
        assert 0 < result["ops"] <= record["budget"], (backend, result["ops_by_name"])
        assert result["host_time_per_step_us"]["median"] > 0
