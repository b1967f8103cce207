"""Independent float64 oracles for the tests: slow, explicit loops, written from
docs/method.md (§1-§4) and sharing no code with fasa_fast."""

from __future__ import annotations

import math

import torch


def nonfinite_rows_oracle(features, labels, num_classes):
    """Foreground rows (label in ``[0, C)``) holding a NaN or an Inf, by a loop over every value."""
    rows = features.detach().to(torch.float64).cpu().tolist()
    return sum(
        1
        for row, lab in zip(rows, labels.detach().cpu().tolist(), strict=True)
        if 0 <= lab < num_classes and not all(math.isfinite(v) for v in row)
    )


def stats_update_oracle(features, labels, mean, std, seen, momentum, momentum_on_var):
    """Returns updated (mean, std, seen) as float64/int64 copies; inputs are untouched. Rows
    with a NaN or an Inf anywhere are left out (method §1.3)."""
    mean = mean.detach().to(torch.float64).cpu().clone()
    std = std.detach().to(torch.float64).cpu().clone()
    seen = seen.detach().cpu().clone()
    x = features.detach().to(torch.float64).cpu()
    finite = [all(math.isfinite(v) for v in row) for row in x.tolist()]
    labels = labels.detach().cpu().tolist()
    num_classes, dim = mean.shape
    for c in range(num_classes):
        rows = [i for i, lab in enumerate(labels) if lab == c and finite[i]]
        if not rows:
            continue
        n = len(rows)
        block = x[rows]  # [n, D]
        m = block.sum(0) / n
        var = (
            ((block - m) ** 2).sum(0) / (n - 1) if n > 1 else torch.zeros(dim, dtype=torch.float64)
        )
        if seen[c] == 0:
            mean[c], std[c] = m, var.sqrt()
        else:
            mean[c] = (1 - momentum) * mean[c] + momentum * m
            if momentum_on_var:
                std[c] = ((1 - momentum) * std[c] ** 2 + momentum * var).sqrt()
            elif n > 1:
                std[c] = (1 - momentum) * std[c] + momentum * var.sqrt()
        seen[c] += 1
    return mean, std, seen


def fisher_oracle(mean, std, eps):
    mu = mean.detach().to(torch.float64).cpu()
    var = std.detach().to(torch.float64).cpu() ** 2
    num_classes, dim = mu.shape
    out = torch.zeros(num_classes, num_classes, dtype=torch.float64)
    for i in range(num_classes):
        for j in range(num_classes):
            if i != j:
                out[i, j] = ((mu[i] - mu[j]) ** 2 / (var[i] + var[j] + eps)).sum() / dim
    return out


def philox_oracle(counter, key):
    """Philox-4x32-10 on Python ints (Salmon et al. 2011), for one counter."""
    c0, c1, c2, c3 = counter
    k0, k1 = key
    mask = 0xFFFFFFFF
    for _ in range(10):
        p0, p1 = 0xD2511F53 * c0, 0xCD9E8D57 * c2
        c0, c1, c2, c3 = (
            ((p1 >> 32) ^ c1 ^ k0) & mask,
            p1 & mask,
            ((p0 >> 32) ^ c3 ^ k1) & mask,
            p0 & mask,
        )
        k0, k1 = (k0 + 0x9E3779B9) & mask, (k1 + 0xBB67AE85) & mask
    return c0, c1, c2, c3


def sample_oracle(mean, std, seen, prob, seed, call, k, capacity):
    """Virtual-feature draw with the documented counter layout, in float64 Python loops.

    Returns (features [capacity, D] float64, labels [capacity] int64, (filled, requested)).
    """
    import math

    num_classes, dim = mean.shape
    key = (seed & 0xFFFFFFFF, (seed >> 32) & 0xFFFFFFFF)
    call &= 0xFFFFFFFF
    selected = [
        int(seen[c]) > 0 and philox_oracle((c, 0, 0, call), key)[0] < float(prob[c]) * 2.0**32
        for c in range(num_classes)
    ]
    start = (philox_oracle((0, 0, 1, call), key)[0] * num_classes) >> 32 if num_classes else 0
    features = torch.zeros(capacity, dim, dtype=torch.float64)
    labels = torch.full((capacity,), -1, dtype=torch.long)
    slot, requested = 0, 0
    for pos in range(num_classes):
        c = (start + pos) % num_classes
        if not selected[c]:
            continue
        requested += k
        for j in range(k):
            if slot >= capacity:
                break
            labels[slot] = c
            for d in range(dim):
                words = philox_oracle((d // 4, c, 2 + j, call), key)
                a, b = (words[0], words[1]) if d % 4 < 2 else (words[2], words[3])
                u1, u2 = (a + 1) / 2.0**32, (b + 1) / 2.0**32
                r, theta = math.sqrt(-2 * math.log(u1)), 2 * math.pi * u2
                z = r * math.cos(theta) if d % 2 == 0 else r * math.sin(theta)
                features[slot, d] = float(mean[c, d]) + float(std[c, d]) * z
            slot += 1
    return features, labels, (slot, requested)


def cross_entropy_oracle(logits, label):
    """Softmax cross-entropy of one row of float64 logits (a list) against ``label``."""
    import math

    top = max(logits)
    return top + math.log(sum(math.exp(v - top) for v in logits)) - logits[label]


def virtual_loss_oracle(features, labels, weight, bias, loss_weight):
    """FASA's virtual-feature loss for a linear classifier (method §2), in float64 loops.

    ``loss_weight`` times the mean softmax cross-entropy of ``weight @ x + bias`` over the rows
    with a label >= 0 (the others are padding); 0.0 when there is no such row.
    """
    w = weight.detach().to(torch.float64).cpu().tolist()
    b = bias.detach().to(torch.float64).cpu().tolist()
    x = features.detach().to(torch.float64).cpu().tolist()
    total, rows = 0.0, 0
    for row, label in zip(x, labels.tolist(), strict=True):
        if label < 0:
            continue
        logits = [
            sum(wi * xi for wi, xi in zip(w_c, row, strict=True)) + b_c
            for w_c, b_c in zip(w, b, strict=True)
        ]
        total += cross_entropy_oracle(logits, label)
        rows += 1
    return loss_weight * total / rows if rows else 0.0


def adapt_oracle(prob, groups, class_loss, class_valid, prev_loss, prev_valid, alpha, beta):
    """One adaptation step after the first (method §3-4), in Python floats.

    For each group (``groups[c] >= 0``) the mean loss of its classes with data now *and* at the
    previous adaptation is compared with their previous mean: lower -> every member's
    probability times ``alpha``, higher -> times ``beta``, equal or no such class -> unchanged;
    then clamped to [0, 1]. Classes in group -1 keep their probability. Returns a list.
    """
    prob = [float(p) for p in prob]
    groups = [int(g) for g in groups]
    for g in sorted(set(groups) - {-1}):
        members = [c for c, gc in enumerate(groups) if gc == g]
        both = [c for c in members if class_valid[c] and prev_valid[c]]
        if not both:
            continue
        now = sum(float(class_loss[c]) for c in both) / len(both)
        before = sum(float(prev_loss[c]) for c in both) / len(both)
        factor = alpha if now < before else beta if now > before else 1.0
        for c in members:
            prob[c] = min(1.0, max(0.0, prob[c] * factor))
    return prob


class EngineReplay:
    """``fasa_fast.FASA``'s state and arithmetic replayed in float64 Python loops.

    Written from the method spec and the engine's documented API, sharing no code with
    fasa_fast. The groups of an adaptation are given by the caller (grouping has its own
    tests); the classifier is linear (``weight [C', D]``, ``bias [C']``). Probabilities are
    rounded to float32 after each step because the engine stores them in float32 and the draw
    compares against the stored value.
    """

    def __init__(
        self,
        num_classes,
        feat_dim,
        instance_counts,
        *,
        momentum=0.1,
        momentum_on_var=False,
        loss_weight=0.1,
        k=1,
        capacity=64,
        init_scale=1.0,
        power=1.0,
        alpha=1.1,
        beta=0.9,
        warmup_epochs=1,
        seed=0,
    ):
        self.num_classes, self.feat_dim = num_classes, feat_dim
        self.momentum, self.momentum_on_var = momentum, momentum_on_var
        self.loss_weight, self.k, self.capacity = loss_weight, k, capacity
        self.alpha, self.beta, self.warmup_epochs, self.seed = alpha, beta, warmup_epochs, seed
        inverse = [(1.0 / int(n)) ** power for n in instance_counts]
        total = sum(inverse)
        self.prob = [_to_float32(min(1.0, max(0.0, init_scale * v / total))) for v in inverse]
        self.mean = torch.zeros(num_classes, feat_dim, dtype=torch.float64)
        self.std = torch.zeros(num_classes, feat_dim, dtype=torch.float64)
        self.seen = torch.zeros(num_classes, dtype=torch.long)
        self.call = 0
        self.epoch = 0
        self.num_adaptations = 0
        self.loss_sum = [0.0] * num_classes
        self.loss_count = [0] * num_classes
        self.prev_loss = [0.0] * num_classes
        self.prev_valid = [False] * num_classes

    def update(self, features, labels):
        self.mean, self.std, self.seen = stats_update_oracle(
            features, labels, self.mean, self.std, self.seen, self.momentum, self.momentum_on_var
        )

    def virtual_loss(self, weight, bias):
        if self.epoch < self.warmup_epochs:
            return 0.0
        prob = torch.tensor(self.prob, dtype=torch.float64)
        features, labels, _ = sample_oracle(
            self.mean, self.std, self.seen, prob, self.seed, self.call, self.k, self.capacity
        )
        self.call += 1
        return virtual_loss_oracle(features, labels, weight, bias, self.loss_weight)

    def accumulate(self, labels, losses):
        for label, loss in zip(labels.tolist(), losses.tolist(), strict=True):
            if 0 <= label < self.num_classes:
                self.loss_sum[label] += float(loss)
                self.loss_count[label] += 1

    def adapt(self, groups):
        valid = [n > 0 for n in self.loss_count]
        loss = [s / n if n else 0.0 for s, n in zip(self.loss_sum, self.loss_count, strict=True)]
        if self.num_adaptations > 0:
            stepped = adapt_oracle(
                self.prob,
                groups,
                loss,
                valid,
                self.prev_loss,
                self.prev_valid,
                self.alpha,
                self.beta,
            )
            self.prob = [_to_float32(p) for p in stepped]
        self.prev_loss, self.prev_valid = loss, valid
        self.loss_sum = [0.0] * self.num_classes
        self.loss_count = [0] * self.num_classes
        self.num_adaptations += 1


def _to_float32(value):
    return float(torch.tensor(value, dtype=torch.float32))


def softmax_ce_row_loss(logits, label):
    """Softmax cross-entropy of one row, float64 loop."""
    z = [float(v) for v in logits]
    top = max(z)
    return -(z[label] - top - math.log(sum(math.exp(v - top) for v in z)))


def one_hot_bce_row_loss(logits, label):
    """Sum over classes of binary cross-entropy against the one-hot label, float64 loop."""
    total = 0.0
    for j, zj in enumerate(float(v) for v in logits):
        target = 1.0 if j == label else 0.0
        # log(1 + e^z) - target * z, written stably
        total += max(zj, 0.0) + math.log1p(math.exp(-abs(zj))) - target * zj
    return total


def seesaw_row_loss(logits, objectness, label, cum, p, q, eps=1e-2):
    """One positive row, float64 loops: mitigation, compensation, CE; plus objectness CE."""
    z = [float(v) for v in logits]
    exp = [math.exp(v - max(z)) for v in z]
    score = [e / sum(exp) for e in exp]
    adjusted = []
    for j, zj in enumerate(z):
        if j == label:
            adjusted.append(zj)
            continue
        n_j, n_y = max(float(cum[j]), 1.0), max(float(cum[label]), 1.0)
        mitigation = (n_j / n_y) ** p if n_j < n_y else 1.0
        ratio = score[j] / max(score[label], eps)
        compensation = ratio**q if ratio > 1.0 else 1.0
        adjusted.append(zj + math.log(mitigation * compensation))
    top = max(adjusted)
    class_term = -(adjusted[label] - top - math.log(sum(math.exp(a - top) for a in adjusted)))
    o = [float(v) for v in objectness]
    top = max(o)
    objectness_term = -(o[0] - top - math.log(sum(math.exp(v - top) for v in o)))
    return class_term + objectness_term
