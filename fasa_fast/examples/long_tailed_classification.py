"""Long-tailed classification with FASA (paper §4.4, Table 3 in miniature), all else equal.

Datasets:
- ``synthetic`` (default, no files needed): 100 classes of 32-D points around 10 super-category
  centres (classes overlap within a super-category), training counts falling exponentially from
  500 to 5 (imbalance 100), a balanced test set of 50 points per class;
- ``digits-lt``: scikit-learn's bundled handwritten digits (1,797 real 8x8 images, shipped with
  the package, nothing downloaded): 50 images per class held out as a balanced test set, the
  rest subsampled to an exponential profile from 130 down to 1 image (imbalance 100);
- ``cifar100-lt``: CIFAR-100 with the usual exponential profile (Cao et al. 2019), read from
  the python pickles of ``cifar-100-python`` under ``--data-root`` (never downloaded).

Methods (``--methods``, the paper's Table 3 ablation; default: the four below):
- ``baseline``: softmax cross-entropy, no FASA;
- ``static-s1``, ``static-s5`` (any ``static-s<S>``): virtual features (``fasa_fast.FASA``) drawn
  with the Eq. 4 probabilities at scale ``S``, kept fixed (no adaptation);
- ``adaptive`` (= ``adaptive-s1``; any ``adaptive-s<S>``): FASA as published, Eq. 4 at scale
  ``S`` plus, after each epoch past the warm-up, an adaptation pass on a held-out part of the
  training set (up to 10% of each class with at least 10 images; other classes move with their
  group), with the engine's default grouping;
- ``adaptive[-s<S>]:<grouping>``: the same with another grouping rule of
  ``fasa_fast.grouping`` (e.g. ``adaptive:single``, every class in one group, or
  ``adaptive:per-class``, no grouping).

Every method trains the same model from the same initialisation on the same batches of the
same data for a given seed (the held-out part is withheld from all of them), so differences
between methods are paired by seed.

Reports balanced test accuracy over all classes and for the many (> 100 training images),
medium (20–100) and few (< 20) shot classes, mean ± std over the seeds, and the per-seed
differences of each FASA variant from the baseline.

Run: ``python -m fasa_fast.examples.long_tailed_classification --seeds 0 1 2``
"""

from __future__ import annotations

import argparse
import pickle
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from fasa_fast.engine import FASA
from fasa_fast.grouping import DEFAULT_GROUPING, GROUPING_METHODS
from fasa_fast.ops import get_backend


@dataclass
class LongTailedData:
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_adapt: torch.Tensor
    y_adapt: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    train_counts: torch.Tensor  # instances per class in x_train (what FASA's Eq. 4 sees)

    @property
    def num_classes(self) -> int:
        return len(self.train_counts)


def long_tail_profile(num_classes: int, head: int, imbalance: float) -> list[int]:
    """Exponential profile: ``head * imbalance^(-c / (C - 1))`` images for class c."""
    return [
        max(1, int(head * imbalance ** (-c / max(1, num_classes - 1)))) for c in range(num_classes)
    ]


def split_adaptation(x, y, num_classes, gen, fraction=0.1, min_class=10):
    """Hold out up to ``fraction`` of each class with at least ``min_class`` samples."""
    keep, held = [], []
    for c in range(num_classes):
        idx = torch.nonzero(y == c).flatten()
        idx = idx[torch.randperm(len(idx), generator=gen)]
        n_held = int(len(idx) * fraction) if len(idx) >= min_class else 0
        held.append(idx[:n_held])
        keep.append(idx[n_held:])
    keep, held = torch.cat(keep), torch.cat(held)
    return x[keep], y[keep], x[held], y[held]


def synthetic_long_tailed(
    seed: int, num_classes: int = 100, dim: int = 32, imbalance: float = 100.0
) -> LongTailedData:
    gen = torch.Generator().manual_seed(1000 + seed)
    supers = torch.randn(10, dim, generator=gen) * 2.0
    centres = (
        supers[torch.arange(num_classes) % 10] + torch.randn(num_classes, dim, generator=gen) * 0.5
    )
    scales = 0.8 + 0.4 * torch.rand(num_classes, 1, generator=gen)
    counts = long_tail_profile(num_classes, 500, imbalance)

    def draw(labels):
        return centres[labels] + scales[labels] * torch.randn(len(labels), dim, generator=gen)

    y = torch.cat([torch.full((n,), c) for c, n in enumerate(counts)])
    x = draw(y)
    x, y, x_adapt, y_adapt = split_adaptation(x, y, num_classes, gen)
    y_test = torch.arange(num_classes).repeat_interleave(50)
    return LongTailedData(
        x, y, x_adapt, y_adapt, draw(y_test), y_test, torch.bincount(y, minlength=num_classes)
    )


def digits_long_tailed(
    seed: int, imbalance: float = 100.0, test_per_class: int = 50
) -> LongTailedData:
    """scikit-learn's digits as a long-tailed task (the data ships with scikit-learn)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x_all = torch.as_tensor(digits.data, dtype=torch.float32) / 16.0
    y_all = torch.as_tensor(digits.target, dtype=torch.long)
    gen = torch.Generator().manual_seed(seed)
    train_idx, test_idx = [], []
    for c in range(10):
        idx = torch.nonzero(y_all == c).flatten()
        idx = idx[torch.randperm(len(idx), generator=gen)]
        test_idx.append(idx[:test_per_class])
        train_idx.append(idx[test_per_class:])
    head = min(len(i) for i in train_idx)
    counts = long_tail_profile(10, head, imbalance)
    chosen = torch.cat([idx[:n] for idx, n in zip(train_idx, counts, strict=True)])
    x, y, x_adapt, y_adapt = split_adaptation(x_all[chosen], y_all[chosen], 10, gen)
    test = torch.cat(test_idx)
    return LongTailedData(
        x, y, x_adapt, y_adapt, x_all[test], y_all[test], torch.bincount(y, minlength=10)
    )


def _unpickle(path: Path) -> dict:
    with open(path, "rb") as f:
        return pickle.load(f, encoding="bytes")


def cifar100_long_tailed(root: str | Path, seed: int, imbalance: float = 100.0) -> LongTailedData:
    """CIFAR-100-LT from the python pickles ``<root>/cifar-100-python/{train,test}``."""
    base = Path(root) / "cifar-100-python"
    if not (base / "train").is_file():
        raise FileNotFoundError(
            f"CIFAR-100 python pickles not found under {base} (expects 'train' and 'test')"
        )
    train, test = _unpickle(base / "train"), _unpickle(base / "test")

    def images(d):
        x = torch.as_tensor(d[b"data"], dtype=torch.float32).reshape(-1, 3, 32, 32) / 255.0
        mean = torch.tensor([0.507, 0.487, 0.441]).view(1, 3, 1, 1)
        std = torch.tensor([0.267, 0.256, 0.276]).view(1, 3, 1, 1)
        return (x - mean) / std, torch.as_tensor(d[b"fine_labels"], dtype=torch.long)

    x, y = images(train)
    num_classes = int(y.max()) + 1
    gen = torch.Generator().manual_seed(seed)
    counts = long_tail_profile(num_classes, int(torch.bincount(y).max()), imbalance)
    chosen = [torch.nonzero(y == c).flatten()[:n] for c, n in enumerate(counts)]
    idx = torch.cat(chosen)
    x, y, x_adapt, y_adapt = split_adaptation(x[idx], y[idx], num_classes, gen)
    x_test, y_test = images(test)
    return LongTailedData(
        x, y, x_adapt, y_adapt, x_test, y_test, torch.bincount(y, minlength=num_classes)
    )


class MLPClassifier(nn.Module):
    def __init__(self, in_dim: int, num_classes: int, hidden: int = 128):
        super().__init__()
        self.body = nn.Sequential(
            nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU()
        )
        self.fc_cls = nn.Linear(hidden, num_classes)

    def forward(self, x):
        features = self.body(x)
        return features, self.fc_cls(features)


class SmallCNN(nn.Module):
    def __init__(self, num_classes: int, width: int = 32):
        super().__init__()

        def block(cin, cout):
            return nn.Sequential(
                nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(), nn.MaxPool2d(2)
            )

        self.body = nn.Sequential(
            block(3, width),
            block(width, 2 * width),
            block(2 * width, 4 * width),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.fc_cls = nn.Linear(4 * width, num_classes)

    def forward(self, x):
        features = self.body(x)
        return features, self.fc_cls(features)


@dataclass
class TrainConfig:
    epochs: int = 30
    batch_size: int = 128
    lr: float = 0.05
    warmup_epochs: int = 1
    fasa_loss_weight: float = 0.1
    capacity: int = 64


@dataclass(frozen=True)
class Method:
    """One row of the ablation: ``scale`` is s of Eq. 4 (``None``: no FASA at all); ``grouping``
    the adaptive variant's grouping rule (``None``: the engine's default)."""

    name: str
    scale: float | None = None
    adaptive: bool = False
    grouping: str | None = None

    @property
    def label(self) -> str:
        if self.scale is None:
            return "softmax CE"
        if self.adaptive:
            grouping = self.grouping or f"{DEFAULT_GROUPING} (default)"
            return f"+ FASA, adaptive from s = {self.scale:g}, grouping {grouping}"
        return f"+ FA, static s = {self.scale:g}"


DEFAULT_METHODS = ("baseline", "static-s1", "static-s5", "adaptive")
_METHOD_PATTERN = re.compile(r"(static|adaptive)(?:-s(\d+(?:\.\d+)?))?(?::([a-z-]+))?")


def parse_method(name: str) -> Method:
    """``baseline``, ``static-s<S>`` or ``adaptive[-s<S>][:<grouping>]`` (s = 1 when omitted)."""
    if name == "baseline":
        return Method(name)
    match = _METHOD_PATTERN.fullmatch(name)
    if (
        match is None
        or (match[1] == "static" and match[2] is None)
        or (match[1] == "static" and match[3] is not None)
    ):
        raise ValueError(
            f"method: expected 'baseline', 'static-s<S>' or 'adaptive[-s<S>][:<grouping>]', "
            f"got {name!r}"
        )
    scale = float(match[2]) if match[2] is not None else 1.0
    if scale <= 0:
        raise ValueError(f"method {name!r}: expected a scale s > 0, got {scale:g}")
    if match[3] is not None and match[3] not in GROUPING_METHODS:
        raise ValueError(
            f"method {name!r}: expected a grouping of {GROUPING_METHODS}, got {match[3]!r}"
        )
    return Method(name, scale, match[1] == "adaptive", match[3])


def parse_methods(names: list[str] | tuple[str, ...]) -> list[Method]:
    """``parse_method`` over a list of distinct names (each is one column of paired runs)."""
    if len(set(names)) != len(names):
        raise ValueError(f"methods: expected distinct names, got {list(names)}")
    return [parse_method(name) for name in names]


def train(
    data: LongTailedData,
    *,
    method: Method | str,
    seed: int,
    cfg: TrainConfig,
    on_adapt: Callable[[FASA, dict], None] | None = None,
) -> tuple[nn.Module, FASA | None]:
    """Train one method; the model's initialisation and batch order depend on ``seed`` only.

    ``on_adapt(engine, summary)`` runs after every adaptation (e.g. to record the statistics the
    grouping saw: ``benchmarks/grouping_measurement.py``)."""
    method = parse_method(method) if isinstance(method, str) else method
    torch.manual_seed(seed)
    if data.x_train.dim() == 4:
        model: nn.Module = SmallCNN(data.num_classes)
    else:
        model = MLPClassifier(data.x_train.shape[1], data.num_classes)
    engine = None
    if method.scale is not None:
        engine = FASA(
            data.num_classes,
            model.fc_cls.in_features,
            data.train_counts,
            init_scale=method.scale,
            loss_weight=cfg.fasa_loss_weight,
            capacity=cfg.capacity,
            warmup_epochs=cfg.warmup_epochs,
            grouping=method.grouping or DEFAULT_GROUPING,
            seed=seed,
        )
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=0.9, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, cfg.epochs)
    order = torch.Generator().manual_seed(seed)
    for epoch in range(cfg.epochs):
        model.train()
        if engine is not None:
            engine.start_epoch(epoch)
        for idx in torch.randperm(len(data.y_train), generator=order).split(cfg.batch_size):
            features, logits = model(data.x_train[idx])
            loss = F.cross_entropy(logits, data.y_train[idx])
            if engine is not None:
                engine.update(features, data.y_train[idx])
                loss = loss + engine.virtual_loss(model.fc_cls)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        sched.step()
        if method.adaptive and engine.augmenting and len(data.y_adapt) > 0:
            model.eval()
            with torch.no_grad():
                for idx in torch.arange(len(data.y_adapt)).split(512):
                    engine.accumulate_adaptation_loss(
                        data.y_adapt[idx], logits=model(data.x_adapt[idx])[1]
                    )
            summary = engine.adapt()
            if on_adapt is not None:
                on_adapt(engine, summary)
    return model, engine


@torch.no_grad()
def evaluate(model: nn.Module, data: LongTailedData) -> dict[str, float]:
    model.eval()
    preds = torch.cat([model(x)[1].argmax(1) for x in data.x_test.split(1024)])
    correct = torch.zeros(data.num_classes)
    total = torch.zeros(data.num_classes)
    correct.index_add_(0, data.y_test, (preds == data.y_test).float())
    total.index_add_(0, data.y_test, torch.ones_like(preds, dtype=torch.float32))
    per_class = correct / total.clamp(min=1)
    n = data.train_counts
    groups = {"all": n >= 0, "many": n > 100, "medium": (n >= 20) & (n <= 100), "few": n < 20}
    return {
        name: per_class[mask].mean().item() * 100 if mask.any() else float("nan")
        for name, mask in groups.items()
    }


def load_dataset(dataset: str, seed: int, data_root: str | Path | None = None) -> LongTailedData:
    if dataset == "synthetic":
        return synthetic_long_tailed(seed)
    if dataset == "digits-lt":
        return digits_long_tailed(seed)
    if dataset == "cifar100-lt":
        return cifar100_long_tailed(data_root, seed)
    raise ValueError(
        f"dataset: expected 'synthetic', 'digits-lt' or 'cifar100-lt', got {dataset!r}"
    )


def run_experiment(
    dataset: str,
    seeds: list[int],
    cfg: TrainConfig,
    data_root: str | None = None,
    log=print,
    methods: tuple[str, ...] | list[str] = DEFAULT_METHODS,
) -> dict[str, list[dict[str, float]]]:
    """Per method name, one accuracy dict per seed (in ``seeds`` order, paired across methods)."""
    parsed = parse_methods(methods)
    results: dict[str, list[dict[str, float]]] = {m.name: [] for m in parsed}
    for seed in seeds:
        data = load_dataset(dataset, seed, data_root)
        for method in parsed:
            start = time.perf_counter()
            model, engine = train(data, method=method, seed=seed, cfg=cfg)
            acc = evaluate(model, data)
            results[method.name].append(acc)
            extra = ""
            if engine is not None:
                extra = f", p(sum)={engine.prob.sum().item():.2f}"
                extra += f", adaptations {engine.num_adaptations}"
            log(
                f"seed {seed} {method.name:<10} "
                + " ".join(f"{k} {v:5.1f}" for k, v in acc.items())
                + f" ({time.perf_counter() - start:.0f} s{extra})"
            )
    return results


GROUPS = ("all", "many", "medium", "few")


def _mean_std(values: list[float]) -> tuple[float, float]:
    t = torch.tensor(values, dtype=torch.float64)
    return t.mean().item(), (t.std().item() if len(t) > 1 else 0.0)


def summary_table(results: dict[str, list[dict[str, float]]]) -> str:
    """Markdown: mean ± std per method, then the per-seed differences (mean ± std) of each FASA
    variant from ``baseline``, of each adaptive variant from the static one with the same s
    (the paper's question: does adapting the probabilities beat keeping them) and from the
    adaptive one-group variant with the same s (does grouping matter)."""
    methods = parse_methods(list(results))
    lines = ["| method | all | many | medium | few |", "|---|---|---|---|---|"]
    for method in methods:
        cells = []
        for key in GROUPS:
            mean, spread = _mean_std([r[key] for r in results[method.name]])
            cells.append(f"{mean:.1f} ± {spread:.1f}")
        lines.append(f"| {method.label} | " + " | ".join(cells) + " |")
    pairs = [(m.name, "baseline") for m in methods if m.scale is not None and "baseline" in results]
    pairs += [
        (a.name, s.name)
        for a in methods
        if a.adaptive
        for s in methods
        if s.scale == a.scale and s.scale is not None and not s.adaptive
    ]
    # does grouping matter: each adaptive variant against the one-group one of the same s
    pairs += [
        (a.name, s.name)
        for a in methods
        if a.adaptive and a.grouping != "single"
        for s in methods
        if s.adaptive and s.grouping == "single" and s.scale == a.scale
    ]
    for name, reference in pairs:
        cells = []
        for key in GROUPS:  # paired by seed: same data, init and batches
            diff = [r[key] - b[key] for r, b in zip(results[name], results[reference], strict=True)]
            mean, spread = _mean_std(diff)
            cells.append(f"{mean:+.1f} ± {spread:.1f}")
        lines.append(f"| {name} − {reference}, per seed | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--dataset", choices=("synthetic", "digits-lt", "cifar100-lt"), default="synthetic"
    )
    parser.add_argument("--data-root", default=None, help="folder holding cifar-100-python/")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument(
        "--methods",
        nargs="+",
        default=list(DEFAULT_METHODS),
        help="baseline, static-s<S>, adaptive[-s<S>][:<grouping>] (default: %(default)s)",
    )
    parser.add_argument("--fasa-loss-weight", type=float, default=0.1)
    args = parser.parse_args(argv)
    if args.dataset == "cifar100-lt" and args.data_root is None:
        parser.error("--data-root is required for cifar100-lt")
    try:
        parse_methods(args.methods)
    except ValueError as err:
        parser.error(f"--methods: {err}")
    cfg = TrainConfig(epochs=args.epochs, fasa_loss_weight=args.fasa_loss_weight)
    start = time.perf_counter()
    results = run_experiment(args.dataset, args.seeds, cfg, args.data_root, methods=args.methods)
    print(
        f"\n{args.dataset}, seeds {args.seeds}, {args.epochs} epochs, FASA ops on the "
        f"{get_backend('cpu')} CPU backend, {time.perf_counter() - start:.0f} s in all; "
        "balanced test accuracy (%), mean ± std"
    )
    print(summary_table(results))


if __name__ == "__main__":
    main()
