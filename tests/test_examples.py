"""The long-tailed classification example runs end to end."""

from __future__ import annotations

import pickle

import pytest
import torch

from fasa_fast.examples import long_tailed_classification as lt


def test_example_runs_end_to_end(capsys):
    lt.main(["--dataset", "digits-lt", "--seeds", "0", "--epochs", "2"])
    out = capsys.readouterr().out
    table = [line for line in out.splitlines() if line.startswith("| ")]
    rows = [line.split(" | ")[0][2:] for line in table[1:]]
    assert rows == [
        "softmax CE",
        "+ FA, static s = 1",
        "+ FA, static s = 5",
        "+ FASA, adaptive from s = 1, grouping hdbscan (default)",
        "static-s1 − baseline, per seed",
        "static-s5 − baseline, per seed",
        "adaptive − baseline, per seed",
        "adaptive − static-s1, per seed",
    ], out


def test_methods_option_selects_rows(capsys):
    lt.main(["--dataset", "digits-lt", "--seeds", "0", "--epochs", "1", "--methods", "static-s5"])
    table = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ")]
    assert [line.split(" | ")[0] for line in table[1:]] == ["| + FA, static s = 5"]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("baseline", lt.Method("baseline")),
        ("static-s1", lt.Method("static-s1", 1.0, False)),
        ("static-s15", lt.Method("static-s15", 15.0, False)),
        ("static-s2.5", lt.Method("static-s2.5", 2.5, False)),
        ("adaptive", lt.Method("adaptive", 1.0, True)),
        ("adaptive-s5", lt.Method("adaptive-s5", 5.0, True)),
        ("adaptive:single", lt.Method("adaptive:single", 1.0, True, "single")),
        ("adaptive-s5:per-class", lt.Method("adaptive-s5:per-class", 5.0, True, "per-class")),
    ],
)
def test_parse_method(name, expected):
    assert lt.parse_method(name) == expected


@pytest.mark.parametrize(
    "name",
    ["static", "fasa", "static-s", "adaptive-5", "static-s0", "", "static-s1:single", "adaptive:x"],
)
def test_parse_method_rejects(name):
    with pytest.raises(ValueError, match="expected"):
        lt.parse_method(name)


def test_bad_methods_option_is_a_usage_error(capsys):
    with pytest.raises(SystemExit):
        lt.main(["--methods", "baseline", "static"])
    assert "--methods: method: expected 'baseline'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        lt.main(["--methods", "baseline", "baseline"])
    assert "--methods: methods: expected distinct names" in capsys.readouterr().err


def test_methods_are_paired_same_init_and_batches():
    """During the warm-up epoch FASA only gathers statistics, so every method must end that
    epoch with the very same weights: same initialisation, same batches, same data."""
    data = lt.digits_long_tailed(seed=3)
    cfg = lt.TrainConfig(epochs=1, warmup_epochs=1)
    states = [lt.train(data, method=m, seed=3, cfg=cfg)[0].state_dict() for m in lt.DEFAULT_METHODS]
    for name, state in zip(lt.DEFAULT_METHODS[1:], states[1:], strict=True):
        for key, value in state.items():
            assert torch.equal(value, states[0][key]), f"{name}: {key} differs from baseline"
    other_seed = lt.train(data, method="baseline", seed=4, cfg=cfg)[0].state_dict()
    assert not torch.equal(other_seed["fc_cls.weight"], states[0]["fc_cls.weight"])


def test_static_methods_keep_eq4_probabilities_and_adaptive_adapts():
    data = lt.digits_long_tailed(seed=0)
    cfg = lt.TrainConfig(epochs=3, warmup_epochs=1)
    inverse = 1.0 / data.train_counts.double()  # Eq. 4 by hand, float64
    for scale in (1.0, 5.0):
        _, engine = lt.train(data, method=f"static-s{scale:g}", seed=0, cfg=cfg)
        expected = (scale * inverse / inverse.sum()).clamp(max=1.0)
        assert engine.num_adaptations == 0
        torch.testing.assert_close(engine.prob.double(), expected, rtol=1e-6, atol=0)
    assert expected.max() == 1.0  # s = 5 saturates the rarest digit: the clamp is exercised
    model, engine = lt.train(data, method="adaptive", seed=0, cfg=cfg)
    assert engine.num_adaptations == cfg.epochs - cfg.warmup_epochs
    _, baseline_engine = lt.train(data, method="baseline", seed=0, cfg=cfg)
    assert baseline_engine is None


def test_summary_table_paired_differences():
    def runs(*alls):
        return [{"all": a, "many": 90.0, "medium": 50.0, "few": a - 10} for a in alls]

    results = {
        "baseline": runs(50.0, 60.0, 55.0),
        "static-s1": runs(52.0, 61.0, 55.0),  # per-seed +2, +1, 0
        "adaptive": runs(60.0, 50.0, 58.0),  # per-seed +10, -10, +3
    }
    lines = lt.summary_table(results).splitlines()
    assert lines[2] == "| softmax CE | 55.0 ± 5.0 | 90.0 ± 0.0 | 50.0 ± 0.0 | 45.0 ± 5.0 |"
    assert lines[3].startswith("| + FA, static s = 1 | 56.0 ± 4.6 |")  # std of 52, 61, 55
    # paired: the std of the per-seed differences, not of the two sets of runs
    assert lines[5] == (
        "| static-s1 − baseline, per seed | +1.0 ± 1.0 | +0.0 ± 0.0 | +0.0 ± 0.0 | +1.0 ± 1.0 |"
    )
    assert lines[6].startswith("| adaptive − baseline, per seed | +1.0 ± 10.1 |")
    assert lines[7].startswith("| adaptive − static-s1, per seed | +0.0 ± 9.8 |")
    assert len(lines) == 8


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
    model, engine = lt.train(data, method="adaptive", seed=0, cfg=cfg)
    assert engine.num_adaptations == 2 and (engine.seen > 0).all()
    acc = lt.evaluate(model, data)
    model.eval()
    with torch.no_grad():  # balanced accuracy by hand: the mean of the per-class accuracies
        preds = model(data.x_test)[1].argmax(1)
    per_class = [(preds[data.y_test == c] == c).double().mean().item() for c in range(5)]
    assert set(acc) == {"all", "many", "medium", "few"}
    assert acc["all"] == pytest.approx(100 * sum(per_class) / 5, abs=1e-4)
    assert acc["few"] == pytest.approx(100 * sum(per_class[2:]) / 3, abs=1e-4)  # 11, 7, 4 images


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


def test_summary_table_pairs_adaptive_with_the_static_run_of_its_scale():
    run = [{"all": 50.0, "many": 90.0, "medium": 50.0, "few": 40.0}]
    names = ["static-s1", "static-s5", "adaptive-s5"]  # no baseline: no "− baseline" rows
    lines = lt.summary_table({name: run for name in names}).splitlines()
    assert [line.split(" | ")[0] for line in lines[5:]] == ["| adaptive-s5 − static-s5, per seed"]


def test_adaptive_variants_train_with_their_grouping_and_pair_with_one_group():
    data = lt.digits_long_tailed(0)
    cfg = lt.TrainConfig(epochs=3)
    seen = []
    for name, grouping in (("adaptive:single", "single"), ("adaptive:per-class", "per-class")):
        _, engine = lt.train(
            data, method=name, seed=0, cfg=cfg, on_adapt=lambda e, s: seen.append(s)
        )
        assert engine.grouping == grouping and engine.num_adaptations == 2
    # one group, then every seen class its own group (digits: all 10 classes are seen)
    assert [s["num_groups"] for s in seen] == [1, 1, 10, 10], seen
    run = [{"all": 50.0, "many": 90.0, "medium": 50.0, "few": 40.0}]
    names = ["static-s1", "adaptive:single", "adaptive", "adaptive:per-class"]
    lines = lt.summary_table({name: run for name in names}).splitlines()
    assert [line.split(" | ")[0] for line in lines[6:]] == [
        "| adaptive:single − static-s1, per seed",
        "| adaptive − static-s1, per seed",
        "| adaptive:per-class − static-s1, per seed",
        "| adaptive − adaptive:single, per seed",
        "| adaptive:per-class − adaptive:single, per seed",
    ]
