"""The checkpoint-loading switch (``fasa_fast.mmdet.checkpoint_loading``): torch.load's
``weights_only`` default switched for mmengine's loads, and the environment restored after."""

from __future__ import annotations

import os

import pytest

from fasa_fast.mmdet.checkpoint_loading import mmengine_checkpoint_loading


@pytest.mark.parametrize("before", [None, "0"])
def test_checkpoint_loading_switch_restores_the_environment(monkeypatch, before):
    name = "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"
    if before is None:
        monkeypatch.delenv(name, raising=False)
    else:
        monkeypatch.setenv(name, before)
    with pytest.raises(KeyError):
        with mmengine_checkpoint_loading():
            assert os.environ[name] == "1"
            raise KeyError("inside")
    assert os.environ.get(name) == before
