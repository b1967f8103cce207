"""``python -m fasa_fast.info``: the report a user runs first and pastes into a bug report.

Run as users run it (a fresh interpreter); every field is checked against what this process
finds out on its own: the versions, the extension's load state and provenance, the routing.
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import fasa_fast
from fasa_fast import _extension, info
from fasa_fast.ops import _library
from fasa_fast.ops._registry import OPS

ROOT = Path(__file__).resolve().parents[1]


def run_info(*args: str, prelude: str = "") -> subprocess.CompletedProcess:
    code = prelude + "import sys; from fasa_fast.info import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )


@pytest.fixture(scope="module")
def reported() -> dict:
    out = run_info("--json")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_module_runs_as_typed():
    out = subprocess.run(
        [sys.executable, "-m", "fasa_fast.info"], capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr
    assert f"torch     {torch.__version__}" in out.stdout
    assert f"python    {platform.python_version()}" in out.stdout
    for device in _library.DEVICE_TYPES:
        assert f"  {device:<5} active: {_library.default_backend(device):<10}" in out.stdout


def test_versions_match_this_interpreter(reported):
    assert reported["python"]["version"] == platform.python_version()
    assert reported["torch"]["version"] == torch.__version__
    assert reported["torch"]["cuda"] == torch.version.cuda
    assert reported["torch"]["cuda_available"] == torch.cuda.is_available()
    assert reported["fasa_fast"]["version"] == fasa_fast.__version__
    assert reported["ops"] == sorted(OPS)


def test_extension_state_and_provenance(reported):
    ext = reported["extension"]
    assert ext["loaded"] == fasa_fast.extension_loaded()
    if not ext["loaded"]:
        pytest.skip(f"no extension here: {fasa_fast.extension_error()}")
    assert ext["path"] == _extension.extension_path()
    # the library compiled in this environment says it was built for the torch running now
    assert ext["built_for"]["torch"] == torch.__version__
    assert ext["built_for"]["cxx"] in ("c++17", "c++20")
    assert ext["kernels"]["cpu"] is True
    assert ext["kernels"]["cuda"] == bool(ext["built_for"]["cuda"])
    assert ext["kernels"]["cuda"] == _library.native_available("cuda")
    # a build without CUDA kernels says why (setup.py's reason, compiled into the library)
    assert bool(ext["built_for"]["no_cuda_reason"]) != ext["kernels"]["cuda"]


def test_routing_is_the_default_policy(reported):
    for device in _library.DEVICE_TYPES:
        assert reported["backends"][device]["active"] == _library.default_backend(device)
        assert reported["backends"][device]["available"] == _library.available_backends(device)


def test_triton_status_gives_the_reason(reported, monkeypatch):
    status = reported["triton_backend"]
    assert status.startswith("on") == _library.triton_available(), status
    monkeypatch.setattr(info, "_package_version", lambda name: None)
    assert info._triton_status() == "off: triton is not installed"
    monkeypatch.setattr(info, "_package_version", lambda name: "2.1.0")
    assert info._triton_status() == "off: triton 2.1.0 is older than 3.2, which the kernels need"


def test_report_without_extension_says_why():
    out = run_info(prelude="import sys; sys.modules['fasa_fast._C'] = None; ")
    assert out.returncode == 0, out.stderr
    want = "extension NOT loaded: ModuleNotFoundError: import of fasa_fast._C halted"
    assert want in out.stdout, out.stdout
    assert "native kernels per device type: cpu no, cuda no" in out.stdout
    assert "  cpu   active: reference " in out.stdout
