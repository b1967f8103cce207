"""``scripts/mutation.sh`` (the README's mutation command) end to end on one small module.

The full runs take hours on two cores (docs/reports/mutation.md); this runs the same script on
``fasa_fast/mmdet/lvis_compat.py`` (25 mutants) against its unit tests
(``tests/mmdet/test_lvis_compat.py``), in a scratch folder: snapshot, the check that the copy is
what imports, mutmut, and the score table it reports.
"""

from __future__ import annotations

import os
import subprocess

import pytest

from tests.backends import REPO, in_pinned_env

pytestmark = pytest.mark.skipif(
    not in_pinned_env(), reason="the mutation script runs in the pinned .venv (make env)"
)


def test_mutation_command_scores_a_module(tmp_path):
    env = dict(
        os.environ,
        MUTATION_SCRATCH=str(tmp_path),
        MUTATION_MODULES="fasa_fast/mmdet/lvis_compat.py",
        MUTATION_TESTS="tests/mmdet/test_lvis_compat.py",
        MUTATION_JOBS="2",
    )
    done = subprocess.run(
        ["bash", "scripts/mutation.sh", "mmdet"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "the copy is what imports" in done.stderr
    rows = {
        line.split()[0]: line.split()
        for line in (tmp_path / "mmdet" / "scores.txt").read_text().splitlines()[1:]
    }
    module, total = rows["fasa_fast/mmdet/lvis_compat.py"], rows["total"]
    mutants, killed, unchecked = int(module[1]), int(module[2]), int(module[7])
    assert mutants > 0 and unchecked == 0, module
    assert killed > 0 and module[8] == f"{100 * killed / mutants:.1f}%", module
    assert total[1:] == module[1:], total
    assert (tmp_path / "mmdet" / "survivors.diff").exists()
