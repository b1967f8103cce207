"""The MMDetection tests need mmdet, mmcv and mmengine (in .venv; a bare GPU image has none).

Without them every test module here is reported as skipped, with the reason, instead of
vanishing from the run; in .venv ``tests/test_environment.py`` fails for the missing piece.
"""

from __future__ import annotations

import importlib.util

import pytest

MISSING = [name for name in ("mmdet", "mmcv", "mmengine") if importlib.util.find_spec(name) is None]

if MISSING:

    class _SkippedModule(pytest.Module):
        def collect(self):
            pytest.skip(f"the MMDetection tests need {', '.join(MISSING)} (not installed)")

    def pytest_pycollect_makemodule(module_path, parent):
        return _SkippedModule.from_parent(parent, path=module_path)

else:

    @pytest.fixture(autouse=True)
    def own_visualizer():
        """mmdet's configs name their visualizer "visualizer", and mmengine keeps one instance per
        name per process: every Runner after the first reused the first one, which saves its
        vis_data into the first test's work_dir. Dropping the instances after each test gives the
        next test's Runner its own (and lets pytest remove a passing test's tmp_path)."""
        yield
        from mmengine.visualization import Visualizer

        classes = [Visualizer]
        while classes:
            cls = classes.pop()
            cls._instance_dict.clear()
            classes.extend(cls.__subclasses__())
