"""End-to-end FASA example on an embedded long-tailed task (the README's main command).

A small MLP classifies points drawn from C Gaussian classes whose training counts fall off
exponentially (imbalance ratio 100). The same model is trained twice from the same
initialisation and data order: plain softmax cross-entropy, and with FASA's feature
augmentation on the classifier's input features (running class statistics with
``segmented_stats_update_``, Bernoulli-selected Gaussian virtual features with
``sample_virtual_features``, sampling probabilities from inverse class frequency, Eq. 4, with
``s`` scaled so that a few virtual features are drawn per step). The classes are also grouped by
the Fisher distance of their statistics (``fisher_distance``). It prints balanced test accuracy
for the head / middle / tail thirds of the classes.

This example predates the engine (``fasa_fast.FASA``) and the MMDetection demo; it uses the ops
directly. Run: ``python -m fasa_fast.demo [--seed 0] [--epochs 30]`` (~1 minute on 2 cores).
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from torch import nn

from fasa_fast import extension_loaded
from fasa_fast.ops import (
    fisher_distance,
    get_backend,
    make_rng_state,
    sample_virtual_features,
    segmented_stats_update_,
)


def long_tailed_gaussians(num_classes: int, dim: int, head: int, imbalance: float, seed: int):
    gen = torch.Generator().manual_seed(seed)
    centers = torch.randn(num_classes, dim, generator=gen) * 1.2
    counts = [
        max(1, round(head * imbalance ** (-c / (num_classes - 1)))) for c in range(num_classes)
    ]
    train_labels = torch.cat([torch.full((n,), c) for c, n in enumerate(counts)])
    test_labels = torch.arange(num_classes).repeat_interleave(100)

    def draw(labels):
        return centers[labels] + torch.randn(len(labels), dim, generator=gen)

    return draw(train_labels), train_labels, draw(test_labels), test_labels, torch.tensor(counts)


class MLP(nn.Module):
    def __init__(self, dim: int, hidden: int, num_classes: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU()
        )
        self.fc_cls = nn.Linear(hidden, num_classes)

    def forward(self, x):
        feats = self.body(x)
        return feats, self.fc_cls(feats)


def train(data, *, fasa: bool, epochs: int, seed: int, scale: float, loss_weight: float = 0.1):
    x, y, _, _, counts = data
    num_classes = len(counts)
    torch.manual_seed(seed)
    model = MLP(x.shape[1], 64, num_classes)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    hidden = model.fc_cls.in_features
    mean, std = torch.zeros(num_classes, hidden), torch.zeros(num_classes, hidden)
    seen = torch.zeros(num_classes, dtype=torch.long)
    inv = 1.0 / counts.double()
    prob = (scale * inv / inv.sum()).clamp(0, 1).float()  # Eq. 4
    rng = make_rng_state(seed)
    drawn = 0
    order_gen = torch.Generator().manual_seed(seed)
    for epoch in range(epochs):
        for idx in torch.randperm(len(y), generator=order_gen).split(128):
            feats, logits = model(x[idx])
            loss = F.cross_entropy(logits, y[idx])
            if fasa:
                segmented_stats_update_(feats, y[idx], mean, std, seen, momentum=0.1)
                if epoch > 0:  # warm-up: statistics only during the first epoch
                    virtual, labels, counts_out = sample_virtual_features(
                        mean, std, seen, prob, rng, 1, 32
                    )
                    valid = (labels >= 0).float()
                    per_row = F.cross_entropy(
                        model.fc_cls(virtual), labels.clamp(min=0), reduction="none"
                    )
                    loss = loss + loss_weight * (per_row * valid).sum() / valid.sum().clamp(min=1)
                    drawn += int(counts_out[0])  # demo bookkeeping only; training needs no sync
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model, (mean, std, seen), drawn


@torch.no_grad()
def per_group_accuracy(model, data):
    _, _, x_test, y_test, counts = data
    pred = model(x_test)[1].argmax(1)
    per_class = torch.zeros(len(counts))
    for c in range(len(counts)):
        per_class[c] = (pred[y_test == c] == c).float().mean()
    thirds = torch.arange(len(counts)).tensor_split(3)  # classes are sorted by count
    return [per_class[g].mean().item() * 100 for g in thirds] + [per_class.mean().item() * 100]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--classes", type=int, default=30)
    parser.add_argument(
        "--scale", type=float, default=4.0, help="s of Eq. 4: expected draws per step"
    )
    args = parser.parse_args(argv)
    start = time.perf_counter()
    print(
        f"fasa_fast demo: extension loaded={extension_loaded()}, cpu backend={get_backend('cpu')}"
    )
    data = long_tailed_gaussians(args.classes, 16, head=400, imbalance=100.0, seed=args.seed)
    counts = data[4]
    print(
        f"{args.classes} classes, {int(counts.sum())} training points, counts {int(counts[0])} .. {int(counts[-1])}"
    )
    rows = []
    for fasa in (False, True):
        model, (mean, std, seen), drawn = train(
            data, fasa=fasa, epochs=args.epochs, seed=args.seed, scale=args.scale
        )
        acc = per_group_accuracy(model, data)
        rows.append(("softmax CE + FASA (FA)" if fasa else "softmax CE", *acc, drawn))
    print(f"\n{'method':<24}{'head':>8}{'middle':>8}{'tail':>8}{'all':>8}{'virtual':>9}")
    for name, head, mid, tail, overall, drawn in rows:
        print(f"{name:<24}{head:8.1f}{mid:8.1f}{tail:8.1f}{overall:8.1f}{drawn:9d}")
    dist = fisher_distance(mean, std, classes=torch.nonzero(seen > 0).flatten())
    print(
        f"\nFisher distance between the {dist.shape[0]} seen classes: median {dist.median().item():.2f}, "
        f"max {dist.max().item():.2f} (the engine groups classes on this matrix)"
    )
    print(
        "Balanced test accuracy (%) per third of the classes, sorted by training count; one seed,"
    )
    print(f"no adaptive sampling yet; done in {time.perf_counter() - start:.1f} s.")


if __name__ == "__main__":
    main()
