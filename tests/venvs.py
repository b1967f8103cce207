"""Throwaway user environments for the install tests: a clean copy of the checkout (what `git
clone` gives a user) and a fresh virtual environment that sees this interpreter's packages."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# the checkout without build outputs or environments (what `git clone` gives a user)
IGNORED = shutil.ignore_patterns(
    ".git", ".venv*", "build", "*.so", "*.egg-info", "__pycache__", "results", ".mutation",
    ".hypothesis", ".pytest_cache", ".ruff_cache", ".whl", "work_dirs", "data", ".benchmarks",
)  # fmt: skip


def user_env(tmp_path: Path, with_torch: bool = True) -> Path:
    """A fresh venv; with ``with_torch`` it sees this environment's packages, torch included."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    if with_torch:
        purelib = subprocess.run(
            [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
        # every site-packages this interpreter sees (a .pth line only adds a path)
        outer = [p for p in sys.path if p.endswith(("site-packages", "dist-packages"))]
        (Path(purelib) / "outer_env.pth").write_text("\n".join(outer) + "\n")
    return python


def checkout(tmp_path: Path) -> Path:
    src = tmp_path / "fasa_fast_checkout"
    shutil.copytree(ROOT, src, ignore=IGNORED)
    return src
