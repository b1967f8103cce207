"""Every command the user and contributor documents show is run by some test: this module runs the
small ones itself and holds the map from each command to the test or CI step that runs it,
checked against README.md, CONTRIBUTING.md, configs/fasa/README.md and every docs/**/*.md."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.backends import need

REPO = Path(__file__).resolve().parents[1]

# Command (its start, after `.venv/bin/` and leading VAR=value assignments are dropped) -> where it
# runs. Commands that need a GPU or LVIS say so.
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
    "python -m pytest benchmarks/test_bench_ops.py": "benchmarks/ in quick mode inside make test (same code, one round)",
    "python -m pytest benchmarks/test_bench_overhead.py": "benchmarks/ in quick mode inside make test (same code, one round)",
    "python -m pytest benchmarks/test_bench_detector.py": "benchmarks/ in quick mode inside make test (same code, one round)",
    "pip install -e . --no-build-isolation": "scripts/setup_env.sh, run by make test",
    "python -m benchmarks.detection_evidence": "tests/mmdet/test_detection_evidence.py (its --tiny mode)",
    "python -m benchmarks.grouping_measurement": "tests/test_grouping_measurement.py (one seed, 3 epochs, small D)",
    "pip install -e .": "tests/test_pip_install.py in a fresh venv over torch 2.1.2 (FASA_FAST_PIP_INSTALL_TESTS=1, make mainstream, in .ci/run)",
    "python -m fasa_fast.mmdet.toy_lvis": "test_toy_lvis_command_writes_both_splits (here)",
    "python -m fasa_fast.info": "tests/test_info.py::test_module_runs_as_typed",
    'pip install -e ".[mmdet]"': "tests/test_pip_install.py (FASA_FAST_PIP_INSTALL_TESTS=1, make mainstream: over the MMDetection stack)",
    "pip install .": "tests/test_pip_install.py (its non-editable case; as pip install -e .)",
    "python scripts/build_mmcv.py": "scripts/setup_env.sh (make env) builds mmcv 2.1.0 with it",
    "make lint": "make test's first step (the Makefile's test target depends on it)",
    "ruff check": "make lint, make test's first step",
    "ruff format --check": "make lint, make test's first step",
    "python -m pytest tests/": "make test (its pytest step)",
    "python -m pytest benchmarks/ --benchmark-only": "make test (--quick) and make bench",
    "bash scripts/gpu_check.sh --dry": "make gpu-twin, run by make test",
    "bash scripts/gpu_check.sh": "needs a GPU (make gpu-check; its --dry mode runs in make test)",
    "bash scripts/setup_env.sh": "make env, make test's first step",
    "make mainstream": ".ci/run runs it after make oldest",
    "python -m benchmarks.adaptation_coverage": "test_adaptation_coverage_command_runs (here)",
    "python benchmarks/grouping_study.py": "test_grouping_study_command_runs (here)",
}


# Documents whose commands are checked; docs/**/*.md is globbed, so a new page is covered at once.
NAMED_DOCUMENTS = ("README.md", "CONTRIBUTING.md", "configs/fasa/README.md")
INLINE_COMMAND = re.compile(r"`((?:\.venv/bin/)?(?:make|python|pip|torchrun|bash) [^`]+)`")
ASSIGNMENT = re.compile(r"^(?:[A-Za-z_][A-Za-z0-9_]*=\S*\s+)+")


def documents() -> list[Path]:
    named = [REPO / name for name in NAMED_DOCUMENTS if (REPO / name).is_file()]
    return named + sorted((REPO / "docs").rglob("*.md"))


def normalise(command: str) -> str:
    """The command as RUN_BY keys it: no `.venv/bin/`, no leading environment assignments."""
    return ASSIGNMENT.sub("", command.strip()).replace(".venv/bin/", "")


def commands_in(text: str) -> list[str]:
    """The commands of ```bash blocks (a trailing backslash joins lines; `#` starts a comment)
    and inline `make ...` / `python ...` / `pip ...` / `torchrun ...` / `bash ...` spans."""
    commands = []
    for block in re.findall(r"```(?:bash|sh|shell|console)\n(.*?)```", text, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split("#")[0].strip()
            if line:
                commands.append(normalise(line))
    commands += [normalise(c) for c in INLINE_COMMAND.findall(text)]
    return commands


def unmapped(commands: list[tuple[str, str]]) -> list[str]:
    """`document: command` for every command that no RUN_BY entry starts."""
    return [
        f"{doc}: {command}"
        for doc, command in commands
        if not any(command.startswith(key) for key in RUN_BY)
    ]


def doc_commands() -> list[tuple[str, str]]:
    return [
        (str(path.relative_to(REPO)), command)
        for path in documents()
        for command in commands_in(path.read_text())
    ]


def test_every_documented_command_is_run_somewhere():
    missing = unmapped(doc_commands())
    assert not missing, (
        "commands that no test runs (add a test, then a RUN_BY entry in "
        "tests/test_doc_commands.py; or take the command out of the document):\n  "
        + "\n  ".join(missing)
    )


def test_the_check_covers_every_document_and_names_what_it_misses():
    scanned = {str(path.relative_to(REPO)) for path in documents()}
    for name in ("README.md", "CONTRIBUTING.md", "configs/fasa/README.md", "docs/README.md"):
        assert name in scanned, f"{name} is not scanned for commands"
    assert any(name.startswith("docs/reports/") for name in scanned)
    # the collector sees blocks, continued lines, prefixes and inline spans, and the check
    # names the document and the command it cannot map
    text = (
        "```bash\n.venv/bin/python -m fasa_fast.info   # what was built\n"
        "FOO=1 make frobnicate \\\n  --now\n```\n"
        "Run `torchrun --nproc_per_node 3 x.py` or `pip install -e .`; `python_requires` is no "
        "command.\n```text\nmake never-collected\n```\n"
    )
    found = commands_in(text)
    assert found == [
        "python -m fasa_fast.info",
        "make frobnicate    --now",
        "torchrun --nproc_per_node 3 x.py",
        "pip install -e .",
    ], found
    assert unmapped([("docs/x.md", c) for c in found]) == [
        "docs/x.md: make frobnicate    --now",
        "docs/x.md: torchrun --nproc_per_node 3 x.py",
    ]


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


def test_adaptation_coverage_command_runs():
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.adaptation_coverage", "--repeats", "1", "--dim", "8"],
        capture_output=True, text=True, check=True, cwd=REPO,
    ).stdout  # fmt: skip
    assert "LVIS v1 train:" in out and "| (b) coverage split" in out


def test_grouping_study_command_runs():
    out = subprocess.run(
        [sys.executable, "benchmarks/grouping_study.py", "--dim", "8", "--spread", "0.3"],
        capture_output=True, text=True, check=True, cwd=REPO,
    ).stdout  # fmt: skip
    rows = [line for line in out.splitlines() if line.startswith("| dbscan")]
    assert len(rows) == 12 and "| affinity |" in out
