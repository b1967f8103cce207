"""Hostile configuration and data never corrupt the engine's state silently: each case is a
clear error naming the thing, or a documented behaviour checked here."""

from __future__ import annotations

import pytest
import torch

from fasa_fast import FASA


def engine(**kwargs) -> FASA:
    return FASA(4, 3, [10, 5, 2, 1], warmup_epochs=0, **kwargs)


def snapshot(fasa: FASA) -> dict:
    return {k: v.clone() for k, v in fasa.state_dict().items() if torch.is_tensor(v)}


def assert_unchanged(fasa: FASA, before: dict) -> None:
    for key, value in snapshot(fasa).items():
        assert torch.equal(value, before[key]), key


def test_labels_beyond_num_classes_are_skipped_like_background():
    fasa, reference = engine(), engine()
    features = torch.randn(6, 3)
    fasa.update(features, torch.tensor([0, 1, 4, 9, 1, -3]))  # 4: background, 9 and -3: junk
    reference.update(features[[0, 1, 4]], torch.tensor([0, 1, 1]))
    for key in ("mean", "std", "seen"):
        assert torch.equal(getattr(fasa, key), getattr(reference, key)), key


@pytest.mark.parametrize(
    "features, labels, error, message",
    [
        (torch.randn(5, 4), torch.zeros(5, dtype=torch.long), ValueError, r"features: expected \[N, 3\] \(feat_dim\), got \(5, 4\)"),
        (torch.randn(5), torch.zeros(5, dtype=torch.long), ValueError, r"features: expected \[N, 3\]"),
        (torch.randn(5, 3), torch.zeros(5), TypeError, "labels: expected int64 or int32 class indices, got torch.float32"),
        (torch.randn(5, 3), torch.zeros(4, dtype=torch.long), ValueError, "labels"),
    ],
)  # fmt: skip
def test_bad_step_inputs_fail_before_any_state_changes(features, labels, error, message):
    fasa = engine()
    before = snapshot(fasa)
    with pytest.raises(error, match=message):
        fasa.update(features, labels)
    assert_unchanged(fasa, before)


def test_features_on_another_device_than_the_state_are_refused():
    fasa = engine()
    before = snapshot(fasa)
    with pytest.raises((ValueError, RuntimeError), match="device"):
        fasa.update(
            torch.randn(5, 3, device="meta"), torch.zeros(5, dtype=torch.long, device="meta")
        )
    assert_unchanged(fasa, before)


@pytest.mark.parametrize(
    "other", [dict(num_classes=5, feat_dim=3), dict(num_classes=4, feat_dim=2)]
)
def test_a_checkpoint_of_another_shape_is_refused_by_name(other):
    source = FASA(other["num_classes"], other["feat_dim"], [1] * other["num_classes"])
    target = engine()
    before = snapshot(target)
    with pytest.raises(
        RuntimeError, match=r"FASA state: size mismatch for \w+: the checkpoint has"
    ):
        target.load_state_dict(source.state_dict())
    assert_unchanged(target, before)


def test_an_adaptation_pass_without_positives_moves_nothing():
    fasa = engine()
    fasa.update(torch.randn(8, 3), torch.tensor([0, 1, 2, 3, 0, 1, 2, 3]))
    prob = fasa.prob.clone()
    for _ in range(3):  # nothing accumulated: only background / ignored labels
        fasa.accumulate_adaptation_loss(torch.tensor([4, -1]), losses=torch.tensor([1.0, 2.0]))
        summary = fasa.adapt()
        assert summary["classes_with_data"] == 0 and summary["moved"] == 0
    assert torch.equal(fasa.prob, prob)
