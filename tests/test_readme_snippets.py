"""The README's engine snippet runs as printed: it is taken from README.md and executed in a
small training loop (two classes of Gaussian features, a linear classifier), and what it claims
must hold — statistics gathered, virtual features drawn after the warm-up, an adaptation step."""

from __future__ import annotations

import torch

from fasa_fast import initial_probabilities
from tests.doc_blocks import readme_block


class Model(torch.nn.Module):
    def __init__(self, feat_dim: int, num_classes: int) -> None:
        super().__init__()
        self.body = torch.nn.Linear(feat_dim, feat_dim)
        self.fc_cls = torch.nn.Linear(feat_dim, num_classes)

    def forward(self, x):
        feats = torch.relu(self.body(x))
        return feats, self.fc_cls(feats)


def batches(num_classes: int, feat_dim: int, n: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        y = torch.randint(0, num_classes, (16,), generator=g)
        x = (
            torch.randn(16, feat_dim, generator=g)
            + 3.0 * torch.nn.functional.one_hot(y, feat_dim).float()
        )
        out.append((x, y))
    return out


def test_readme_engine_snippet_trains_and_adapts():
    num_classes, feat_dim = 6, 8
    model = Model(feat_dim, num_classes)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    namespace = {
        "num_classes": num_classes,
        "feat_dim": feat_dim,
        "instance_counts": [400, 200, 100, 20, 5, 2],
        "epochs": 4,
        "loader": batches(num_classes, feat_dim, 8, seed=0),
        "held_out_loader": batches(num_classes, feat_dim, 2, seed=1),
        "model": model,
        "criterion": torch.nn.functional.cross_entropy,
    }
    snippet = readme_block("fasa.virtual_loss(")
    # the snippet's `...` stands for the usual optimiser step
    snippet = snippet.replace(
        "        ...\n", "        optimizer.zero_grad(); loss.backward(); optimizer.step()\n"
    )
    assert "optimizer.step()" in snippet, "README engine snippet: its `...` line moved"
    namespace["optimizer"] = optimizer
    exec(compile(snippet, "README.md (engine snippet)", "exec"), namespace)

    fasa = namespace["fasa"]
    assert bool(fasa.seen.all()), "every class was in the data: all must have statistics"
    # epochs 1-3 augment and adapt; the first adaptation only records, the next two move p
    assert fasa.num_adaptations == 3
    start = initial_probabilities(torch.tensor(namespace["instance_counts"]), 1.0, 1.0)
    assert not torch.allclose(fasa.prob, start), "adapt() moved no probability"
    assert int(fasa.rng_state[1]) > 0, "no virtual features were drawn after the warm-up"
    assert namespace["loss"].requires_grad
