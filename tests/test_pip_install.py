"""`pip install -e .` and `pip install .` typed as is, in a user's environment that already has
a torch: the user's torch stays as it was and the extension is compiled against it.

The user's environment is a throwaway virtual environment that sees this interpreter's
packages (a ``.pth`` file, as ``--system-site-packages`` would over this environment), so
nothing large is downloaded: pip's isolated build fetches only setuptools, wheel and ninja.
Each run compiles the extension (minutes on 2 cores), so the tests run where
``FASA_FAST_PIP_INSTALL_TESTS=1`` asks for them: ``make mainstream`` sets it, in the torch 2.1
environment, whose torch is not the newest one the index has (what an isolated build with
``torch`` in its requirements would fetch).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import textwrap
import time
from pathlib import Path

import pytest
import torch

from tests.venvs import checkout, user_env

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        os.environ.get("FASA_FAST_PIP_INSTALL_TESTS") != "1",
        reason="compiles the extension twice: set FASA_FAST_PIP_INSTALL_TESTS=1 (make mainstream)",
    ),
]


def torch_fingerprint() -> str:
    """The installed torch's version and the hash of its RECORD (every file and its hash), and
    the same of mmcv where it is installed (a user's mmcv wheel is compiled for that torch)."""
    site = Path(torch.__file__).parents[1]
    prints = []
    for name in ("torch", "mmcv"):
        records = sorted(site.glob(f"{name}-*.dist-info/RECORD"))
        prints += [f"{r.parent.name} {hashlib.sha256(r.read_bytes()).hexdigest()}" for r in records]
    assert prints and prints[0].startswith("torch-"), prints
    return f"{torch.__version__} " + " ".join(prints)


def has_mmdet() -> bool:
    import importlib.util

    return importlib.util.find_spec("mmdet") is not None


def pip_install(python: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "PYTHON"))}
    env["FORCE_CUDA"] = os.environ.get("FORCE_CUDA", "")
    return subprocess.run(
        [python, "-m", "pip", "install", *args],
        capture_output=True, text=True, cwd=cwd, env=env, timeout=1800,
    )  # fmt: skip


PROBE = textwrap.dedent(
    """
    import json, torch, fasa_fast
    from fasa_fast._extension import build_info, extension_error
    print(json.dumps({"torch": torch.__version__, "torch_file": torch.__file__,
                      "fasa_fast": fasa_fast.__file__, "loaded": fasa_fast.extension_loaded(),
                      "error": extension_error(), "built_for": build_info()}))
    """
)


@pytest.mark.parametrize("editable", [True, False], ids=["pip-install-e", "pip-install"])
def test_install_as_typed_keeps_the_users_torch_and_builds_for_it(tmp_path, editable):
    before = torch_fingerprint()
    python = user_env(tmp_path)
    src = checkout(tmp_path)
    # where the MMDetection stack is installed, the editable install asks for the extra as the
    # docs write it: satisfied by what is there, it must leave torch and mmcv alone as well
    target = ".[mmdet]" if editable and has_mmdet() else "."
    out = pip_install(python, *(["-e", target] if editable else [target]), cwd=src)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-6000:]
    # nothing of torch was installed into the user's venv, and the outer torch is untouched
    venv_site = Path(
        subprocess.run(
            [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()
    )  # fmt: skip
    assert not list(venv_site.glob("torch*")), sorted(p.name for p in venv_site.iterdir())
    assert torch_fingerprint() == before
    probe = subprocess.run(
        [python, "-c", PROBE], capture_output=True, text=True, cwd=tmp_path, timeout=300
    )
    assert probe.returncode == 0, probe.stderr
    got = json.loads(probe.stdout.strip().splitlines()[-1])
    assert got["torch"] == torch.__version__ and got["torch_file"] == torch.__file__
    where = src if editable else venv_site
    assert Path(got["fasa_fast"]).resolve().is_relative_to(where.resolve()), got
    assert got["loaded"], got["error"]
    assert got["built_for"]["torch"] == torch.__version__, got


def test_install_without_torch_stops_at_once_with_the_command(tmp_path):
    python = user_env(tmp_path, with_torch=False)
    src = checkout(tmp_path)
    start = time.monotonic()
    out = pip_install(python, "-e", ".", cwd=src)
    elapsed = time.monotonic() - start
    assert out.returncode != 0
    assert "Install torch first" in out.stdout + out.stderr, out.stderr[-4000:]
    # it stopped in the metadata step: no torch was downloaded to build with
    assert "Collecting torch" not in out.stdout, out.stdout[-3000:]
    print(f"stopped after {elapsed:.0f} s")
