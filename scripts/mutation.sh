#!/usr/bin/env bash
# Mutation testing of fasa_fast with mutmut, on a copy of the tree, with a score per module.
#
#   scripts/mutation.sh [core|mmdet|all] [pytest selection args]   (`make mutation`: core)
#
# Never mutates the working tree: each group runs in a fresh copy under .mutation/<group>/
# (git-ignored), where `import fasa_fast` resolves to the copy: the package with its compiled
# fasa_fast/_C*.so, and kernels/ copied to fasa_fast/kernels (setup.py maps it there with
# package_dir; the editable install would otherwise serve it from the working tree). mutmut
# 3 copies that tree once more into mutants/, puts every mutant of a function behind a
# trampoline and runs, for each mutant, only the selected tests that call the function. Its
# "forced fail" step (every trampoline raises; at least one test must fail) proves the tests
# import the copy, not the working tree.
#
# mutmut skips decorated functions; the copy's `@torch.no_grad()` methods (FASA.adapt, ...)
# are therefore rewritten to run their body under `with torch.no_grad():`, same behaviour.
#
# Environment: MUTATION_JOBS (parallel test processes, default 1), MUTATION_NICE (default 10),
# MUTATION_MODULES (a subset of the group's modules, e.g. "fasa_fast/engine.py"), MUTATION_RERUN=1
# (rerun only the mutants the group's last run did not kill, with the working tree's
# test modules that hold the tests written to kill mutants: core_new_tests / mmdet_new_tests below,
# on the same snapshot: to confirm that new tests kill them). Results stay in .mutation/<group>/ (MUTATION_SCRATCH:
# another folder): scores.txt, survivors.diff (each surviving mutant's diff), mutmut.log.
# MUTATION_TESTS="tests/x.py ..." replaces the group's whole test selection.
# MUTATION_RESUME=1 goes on with an interrupted run. MUTATION_TIMEOUT_MULTIPLIER (default 60).
# Needs .venv (`make env`); installs the pinned mutmut into it when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
PY="$ROOT/.venv/bin/python"
MUTMUT_VERSION=3.8.1
SCRATCH="${MUTATION_SCRATCH:-$ROOT/.mutation}"
JOBS=${MUTATION_JOBS:-1}
NICE=${MUTATION_NICE:-10}
log() { echo "[mutation] $*" >&2; }

# ---- what is mutated, and the fast tests that cover it ---------------------------------------
# mutmut runs the selection once to learn which test calls which function, then each mutant
# against only those tests; -m "not slow and not cuda" keeps the selection fast.
core_modules=(fasa_fast/engine.py fasa_fast/grouping.py fasa_fast/splits.py fasa_fast/losses.py
  fasa_fast/reporting.py "fasa_fast/ops/*.py")
# MUTATION_MODULES="fasa_fast/engine.py ..." mutates a subset of the group's modules instead.
core_tests=(
  tests/test_engine.py tests/test_engine_streams.py tests/test_splits.py
  tests/test_grouping_rules.py tests/test_segmented_stats_update.py
  tests/test_sample_virtual_features.py tests/test_fisher_distance.py tests/test_op_wrappers.py
  tests/test_op_registry.py tests/test_op_contract.py tests/test_backend_dispatch.py
  tests/test_losses.py tests/test_reporting.py
)
# The glue, without toy_lvis.py (the generator of the synthetic dataset the tests and the demo
# train on) and demo.py (the demo's driver): what pins them trains detectors for minutes
# (tests/mmdet/test_toy_lvis_hard.py, test_demo.py), beyond a mutation run on a CPU.
mmdet_modules=(fasa_fast/mmdet/__init__.py fasa_fast/mmdet/bbox_heads.py fasa_fast/mmdet/cli.py
  fasa_fast/mmdet/checkpoint_loading.py fasa_fast/mmdet/datasets.py fasa_fast/mmdet/hooks.py
  fasa_fast/mmdet/loops.py fasa_fast/mmdet/lvis_compat.py fasa_fast/mmdet/metrics.py)
mmdet_tests=(tests/mmdet/test_bbox_heads.py tests/mmdet/test_hook.py tests/mmdet/test_hook_units.py
  tests/mmdet/test_loops.py tests/mmdet/test_cli.py tests/mmdet/test_checkpoint_loading.py
  tests/mmdet/test_datasets.py tests/mmdet/test_lvis_compat.py tests/mmdet/test_adaptation_set.py
  tests/mmdet/test_seesaw_virtual_loss.py tests/mmdet/test_metrics_and_tools.py
  # the tests that train through mmengine's Runner take 10-45 s each and would run for every
  # mutant of the hook; test_hook_units.py, test_loops.py, test_cli.py, test_datasets.py ... pin
  # the same code unit by unit
  --deselect tests/mmdet/test_metrics_and_tools.py::test_train_resume_and_test_tools
  --deselect tests/mmdet/test_hook.py::test_paper_mode_adaptation_set_val_with_repeat_factor_sampling
  --deselect tests/mmdet/test_bbox_heads.py::test_inference_equals_the_plain_head_after_training
  # two spawned gloo processes: outside mutmut's process, so it maps to no mutant anyway
  --deselect tests/mmdet/test_adaptation_set.py::test_max_images_counts_over_all_ranks)
# the test modules that hold the tests written to kill mutants, which MUTATION_RERUN takes from
# the working tree
core_new_tests="tests/test_engine.py tests/test_grouping_rules.py tests/test_splits.py
  tests/test_op_wrappers.py tests/test_op_registry.py"
mmdet_new_tests="tests/mmdet/test_hook_units.py tests/mmdet/test_loops.py tests/mmdet/test_cli.py
  tests/mmdet/test_checkpoint_loading.py tests/mmdet/test_datasets.py
  tests/mmdet/test_lvis_compat.py"
marker="not slow and not cuda"
# The Triton kernels (kernels/) are not mutated, and on the CPU they run interpreted (slow): the
# ops' wrappers and dispatch are covered through the native and reference backends. Dynamo
# cannot trace mutmut's trampolines, so the torch.compile(fullgraph=True) tests would fail for
# every mutant alike (false kills); they guard traceability, not values.
keyword="not triton and not fullgraph"

toml_list() { # toml_list a b c -> ['a', 'b', 'c'] (literal strings: backslashes stay)
  local out="" item
  for item in "$@"; do out+="${out:+, }'$item'"; done
  echo "[$out]"
}

ensure_mutmut() {
  if [ ! -x "$PY" ]; then
    log "no $PY: run \`make env\` first"
    exit 1
  fi
  if [ "$("$PY" -c 'import importlib.metadata as m; print(m.version("mutmut"))' 2>/dev/null)" != "$MUTMUT_VERSION" ]; then
    log "installing mutmut==$MUTMUT_VERSION into .venv"
    "$PY" -m pip install --quiet "mutmut==$MUTMUT_VERSION"
  fi
}

# Copy the tree into $1: the package (with the .so), kernels as fasa_fast/kernels, tests and
# what they read; then make the copy's decorated functions mutable (see the header).
snapshot() {
  local work=$1
  rm -rf "$work"
  mkdir -p "$work"
  cp -a fasa_fast tests tools configs pyproject.toml setup.py "$work"/
  rm -rf "$work/fasa_fast/kernels"
  cp -a kernels "$work/fasa_fast/kernels"
  find "$work" -name __pycache__ -type d -prune -exec rm -rf {} +
  "$PY" - "$work"/fasa_fast/engine.py "$work"/fasa_fast/mmdet/hooks.py <<'EOF'
import ast
import sys
from pathlib import Path

for path in map(Path, sys.argv[1:]):
    source = path.read_text()
    lines = source.splitlines(keepends=True)
    nodes = [
        node
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.FunctionDef)
        and [ast.unparse(d) for d in node.decorator_list] == ["torch.no_grad()"]
    ]
    for node in sorted(nodes, key=lambda n: n.lineno, reverse=True):
        body = node.body
        if isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) and len(body) > 1:
            body = body[1:]  # the docstring stays the docstring
        start, stop = body[0].lineno - 1, node.end_lineno
        indent = " " * (node.col_offset + 4)
        lines[start:stop] = [indent + "with torch.no_grad():\n"] + [
            "    " + line if line.strip() else line for line in lines[start:stop]
        ]
        del lines[node.decorator_list[0].lineno - 1]
    ast.parse("".join(lines))
    path.write_text("".join(lines))
    print(f"[mutation] {path.name}: {len(nodes)} @torch.no_grad() functions made mutable", file=sys.stderr)
EOF
}

# The copy, not the working tree, must be what `import fasa_fast` finds.
check_imports() {
  local work=$1
  (cd "$work" && PYTHONPATH="$work" "$PY" - "$work" <<'EOF'
import sys

import fasa_fast
import fasa_fast.kernels
from fasa_fast._extension import extension_error, extension_path

root = sys.argv[1]
found = {"fasa_fast": fasa_fast.__file__, "fasa_fast.kernels": fasa_fast.kernels.__file__}
if extension_path() is not None:
    found["fasa_fast._C"] = extension_path()
else:  # the package falls back to the reference kernels; the native-backend tests skip
    print(f"[mutation] warning: no compiled extension ({extension_error()})", file=sys.stderr)
for name, path in found.items():
    if not str(path).startswith(root + "/"):
        sys.exit(f"[mutation] {name}: expected a file under {root}, got {path}")
print(f"[mutation] the copy is what imports: {found}", file=sys.stderr)
EOF
  )
}

# Score table (and survivors) from mutmut's per-file results in mutants/.
report() {
  local work=$1 group=$2
  (cd "$work" && "$PY" - "$group" <<'EOF'
import collections
import json
import sys
from pathlib import Path

from mutmut.mutation.diff_apply import find_mutant, get_diff_for_mutant
from mutmut.stats import status_by_exit_code

group = sys.argv[1]
columns = ("killed", "survived", "timeout", "no tests")
rows, survivors = [], []
for meta in sorted(Path("mutants").rglob("*.py.meta")):
    codes = json.loads(meta.read_text())["exit_code_by_key"]
    if not codes:
        continue
    status = {name: status_by_exit_code[code] for name, code in codes.items()}
    count = collections.Counter(status.values())
    unchecked = count["not checked"]
    other = len(codes) - unchecked - sum(count[c] for c in columns)
    module = str(meta.relative_to("mutants"))[: -len(".meta")]
    rows.append((module, len(codes), *(count[c] for c in columns), other, unchecked))
    survivors += sorted(n for n, s in status.items() if s not in ("killed", "timeout", "not checked"))
rows.append(("total", *(sum(r[i] for r in rows) for i in range(1, 8))))
header = ("module", "mutants", *columns, "other", "unchecked", "score")
fmt = "{:<40} {:>7} {:>6} {:>8} {:>7} {:>8} {:>5} {:>9} {:>6}"


def score(row):  # detected among the checked mutants
    checked = row[1] - row[7]
    return f"{100 * (row[2] + row[4]) / checked:.1f}%" if checked else "-"


lines = [fmt.format(*header)] + [fmt.format(*r, score(r)) for r in rows]
Path("scores.txt").write_text("\n".join(lines) + "\n")
with open("survivors.diff", "w") as out:
    for name in survivors:
        mutant = find_mutant(name)
        out.write(f"# {name}: {status_by_exit_code[mutant.exit_code_by_key[name]]}\n")
        out.write(get_diff_for_mutant(name, path=mutant.path) + "\n")
print(f"\nmutation scores ({group}; score = (killed + timeout) / checked mutants):")
print("\n".join(lines))
print(f"\n{len(survivors)} not killed (diffs: .mutation/{group}/survivors.diff):")
for name in survivors:
    print("  ", name)
EOF
  )
}

# [tool.mutmut] of the copy: the modules to mutate, and the tests to run against them.
write_config() {
  local work=$1 group=$2
  local -n tests="${group}_tests"
  local selection=("${tests[@]}") modules
  if [ -n "${MUTATION_TESTS:-}" ]; then
    read -r -a selection <<<"$MUTATION_TESTS"
  fi
  read -r -a modules <"$work/modules.txt"
  cp "$ROOT/pyproject.toml" "$work/pyproject.toml"
  cat >>"$work/pyproject.toml" <<EOF

[tool.mutmut]
source_paths = ["fasa_fast"]
# what the tests read besides the package (mutmut copies tests/ itself)
also_copy = ["tools", "configs"]
only_mutate = $(toml_list "${modules[@]}")
pytest_add_cli_args_test_selection = $(toml_list "${selection[@]}" -m "$marker" -k "$keyword" ${extra_args[@]+"${extra_args[@]}"})
pytest_add_cli_args = ["-p", "no:cacheprovider", "-p", "no:benchmark"]
# the wording of error messages and warnings is not what this measures (tests that match
# messages check it): lines that raise or warn are not mutated, the conditions before them are
do_not_mutate_patterns = ['^\\s*raise ', 'warnings\\.warn\\(']
process_isolation = "forkserver"
use_git_change_detection = false
# a mutant's tests get (estimate + 1 s) * multiplier of wall time: generous, because a niced run
# on a loaded machine is starved of CPU and would otherwise report false timeouts
timeout_multiplier = ${MUTATION_TIMEOUT_MULTIPLIER:-60}
EOF
}

# mutmut run in the copy, with the given mutant names (none: every mutant without a result).
mutmut_run() {
  local work=$1
  shift
  # mutants/ exists before the interpreter starts, so the PYTHONPATH entry is not cached as
  # missing; mutmut puts it first on sys.path too.
  mkdir -p "$work/mutants"
  (cd "$work" && PYTHONPATH="$work/mutants" OMP_NUM_THREADS=1 \
    nice -n "$NICE" "$PY" -m mutmut run --max-children "$JOBS" "$@") </dev/null >"$work/mutmut.log" 2>&1 || {
    tail -n 40 "$work/mutmut.log" >&2
    log "mutmut failed (log: $work/mutmut.log)"
    return 1
  }
}

run_group() {
  local group=$1 work="$SCRATCH/$1"
  local -n group_modules="${group}_modules"
  log "$group: snapshot of the tree in $work"
  snapshot "$work"
  echo "${MUTATION_MODULES:-${group_modules[*]}}" >"$work/modules.txt"
  write_config "$work" "$group"
  check_imports "$work"
  log "$group: mutmut run (jobs $JOBS, nice $NICE): mutants of $(cat "$work/modules.txt")"
  mutmut_run "$work"
  report "$work" "$group"
}

# MUTATION_RESUME=1: go on with an interrupted run of the group (same snapshot, same tests).
resume_group() {
  local group=$1 work="$SCRATCH/$1"
  if [ ! -f "$work/modules.txt" ]; then
    log "$group: no earlier run in $work to resume"
    return 1
  fi
  write_config "$work" "$group"
  log "$group: resuming the run in $work (jobs $JOBS, nice $NICE)"
  mutmut_run "$work"
  report "$work" "$group"
}

# MUTATION_RERUN=1: after new tests, rerun only the mutants the last run of the group checked
# and did not kill, on the same snapshot of the code with the working tree's tests written to
# kill mutants (${group}_new_tests); keep the other results.
rerun_group() {
  local group=$1 work="$SCRATCH/$1"
  if [ ! -f "$work/modules.txt" ]; then
    log "$group: no earlier run in $work to rerun"
    return 1
  fi
  # only the modules holding the mutant-killing tests come from the working tree: the
  # snapshot's other tests belong to the snapshot's code (they may have moved on with the code)
  local -n new_tests="${group}_new_tests"
  local t
  for t in $new_tests; do cp "$t" "$work/$t"; done
  (cd "$work" && "$PY" - <<'EOF'
import json
from pathlib import Path

from mutmut.stats import status_by_exit_code

previous, names = {}, []
for meta in Path("mutants").rglob("*.py.meta"):
    codes = json.loads(meta.read_text())["exit_code_by_key"]
    previous[str(meta)] = codes
    # mutants with a result other than killed (those not checked yet: MUTATION_RESUME)
    names += [n for n, c in codes.items() if c is not None and status_by_exit_code[c] != "killed"]
Path("previous-results.json").write_text(json.dumps(previous))
Path("rerun-names.txt").write_text("\n".join(names) + "\n")
EOF
  )
  mapfile -t names <"$work/rerun-names.txt"
  write_config "$work" "$group"
  log "$group: rerunning ${#names[@]} mutants with the working tree's tests"
  # a new test selection makes mutmut forget every result: the rerun mutants get new ones,
  # the others keep the previous run's
  mutmut_run "$work" "${names[@]}"
  (cd "$work" && "$PY" - <<'EOF'
import json
from pathlib import Path

previous = json.loads(Path("previous-results.json").read_text())
for path, old in previous.items():
    meta = json.loads(Path(path).read_text())
    new = meta["exit_code_by_key"]
    meta["exit_code_by_key"] = {k: new[k] if new.get(k) is not None else v for k, v in old.items()}
    Path(path).write_text(json.dumps(meta, indent=4))
EOF
  )
  report "$work" "$group"
}

group=${1:-core}
shift || true
extra_args=("$@") # more pytest selection arguments, e.g. --deselect tests/test_x.py::test_y
ensure_mutmut
case "$group" in
  core | mmdet)
    if [ "${MUTATION_RERUN:-0}" = 1 ]; then
      rerun_group "$group"
    elif [ "${MUTATION_RESUME:-0}" = 1 ]; then
      resume_group "$group"
    else
      run_group "$group"
    fi
    ;;
  all) run_group core && run_group mmdet ;;
  *)
    log "usage: $0 [core|mmdet|all] [pytest selection args]"
    exit 2
    ;;
esac
