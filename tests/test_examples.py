"""The long-tailed classification example runs end to end."""

from __future__ import annotations

import pickle

import pytest
import torch

from fasa_fast.examples import long_tailed_classification as lt


def test_example_runs_end_to_end(capsys):
    lt.main(["--seeds", "0", "--epochs", "2"])
    out = capsys.readouterr().out
    assert "| softmax CE + FASA |" in out and "| softmax CE |" in out and "per seed" in out


def test_long_tail_profile():
    assert lt.long_tail_profile(3, 100, 100.0) == [100, 10, 1]


def test_adaptation_split_holds_out_only_from_large_classes():
    y = torch.tensor([0] * 30 + [1] * 9)
    x = torch.arange(len(y)).float()[:, None]
    _, y_keep, _, y_held = lt.split_adaptation(x, y, 2, torch.Generator().manual_seed(0))
    assert torch.bincount(y_held, minlength=2).tolist() == [3, 0]
    assert torch.bincount(y_keep, minlength=2).tolist() == [27, 9]


def write_fake_cifar(root, num_classes=5, per_class=40, test_per_class=4):
    """CIFAR-100's python pickle layout with random images."""
    base = root / "cifar-100-python"
    base.mkdir()
    gen = torch.Generator().manual_seed(0)
    for name, n in (("train", per_class), ("test", test_per_class)):
        labels = [c for c in range(num_classes) for _ in range(n)]
        data = torch.randint(0, 256, (len(labels), 3072), generator=gen, dtype=torch.uint8).numpy()
        with open(base / name, "wb") as f:
            pickle.dump({b"data": data, b"fine_labels": labels}, f)


def test_cifar100_lt_pipeline_on_generated_pickles(tmp_path):
    write_fake_cifar(tmp_path)
    data = lt.cifar100_long_tailed(tmp_path, seed=0, imbalance=10.0)
    # profile 40 * 10^(-c/4) = 40, 22, 12, 7, 4; 10% held out of classes with >= 10 images
    assert data.train_counts.tolist() == [36, 20, 11, 7, 4]
    assert torch.bincount(data.y_adapt, minlength=5).tolist() == [4, 2, 1, 0, 0]
    assert data.x_train.shape[1:] == (3, 32, 32) and data.num_classes == 5
    cfg = lt.TrainConfig(epochs=2, warmup_epochs=0, batch_size=32)
    model, engine = lt.train(data, fasa=True, seed=0, cfg=cfg)
    assert engine.num_adaptations == 2 and (engine.seen > 0).all()
    acc = lt.evaluate(model, data)
    assert set(acc) == {"all", "many", "medium", "few"} and 0 <= acc["all"] <= 100


def test_cifar_missing_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="cifar-100-python"):
        lt.cifar100_long_tailed(tmp_path, seed=0)


def test_digits_lt_is_long_tailed_with_a_balanced_test_set():
    data = lt.digits_long_tailed(seed=0)
    counts = (data.train_counts + torch.bincount(data.y_adapt, minlength=10)).tolist()
    from sklearn.datasets import load_digits

    head = int(torch.bincount(torch.as_tensor(load_digits().target)).min()) - 50
    assert counts == lt.long_tail_profile(10, head, 100.0)  # train + held-out adaptation images
    assert counts[-1] == 1
    assert torch.bincount(data.y_test).tolist() == [50] * 10
    assert data.x_train.shape[1] == 64 and float(data.x_train.max()) <= 1.0
