"""Stateless per-row classification losses for FASA's virtual features and adaptation pass.

FASA scores a virtual feature (and, in the adaptation pass, a ground-truth box) with the
classifier's loss for a *positive* row of a known class, one value per row. These functions are
that loss for the three classifier families FASA is used with; they take logits, never update a
statistic, and know nothing of the detector around them (``fasa_fast.mmdet`` picks one per head).
Computed in float32 whatever the logits' dtype: a loss of fp16 logits can overflow in fp16.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["VIRTUAL_LOSSES", "one_hot_bce", "seesaw_positive", "softmax_ce"]

# The names the detector glue accepts for ``virtual_loss``.
VIRTUAL_LOSSES = ("softmax", "sigmoid", "seesaw")


def softmax_ce(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Softmax cross-entropy per row over all logits given (the classes, plus background for a
    C+1 head): ``[R, K]`` logits, ``[R]`` labels -> ``[R]`` float32."""
    return F.cross_entropy(logits.float(), labels, reduction="none")


def one_hot_bce(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy against the one-hot class, summed over the ``C`` class logits (the
    form of sigmoid-based losses such as EQLv2): ``[R, C]``, ``[R]`` -> ``[R]`` float32."""
    num_classes = logits.shape[1]
    target = F.one_hot(labels.clamp(0, num_classes - 1), num_classes).float()
    return F.binary_cross_entropy_with_logits(logits.float(), target, reduction="none").sum(1)


def seesaw_positive(
    class_logits: torch.Tensor,
    objectness_logits: torch.Tensor,
    labels: torch.Tensor,
    cum_samples: torch.Tensor,
    p: float,
    q: float,
    eps: float,
) -> torch.Tensor:
    """Seesaw loss (Wang et al., CVPR 2021) of positive rows, ``cum_samples`` only read.

    The class term is cross-entropy over the ``C`` class logits after adding
    ``log(M_yj * C_yj)`` to every other class j: mitigation ``M_yj = (N_j / N_y)^p`` where class
    j has seen fewer samples than y (``N`` = ``cum_samples`` clamped to >= 1), compensation
    ``C_yj = (s_j / s_y)^q`` where j scores higher than y (``s`` = softmax of the detached
    logits, ``s_y`` clamped to >= ``eps``). The objectness term is cross-entropy of the two
    objectness logits with "object" (index 0) as the target.

    Args:
        class_logits: ``[R, C]``; objectness_logits: ``[R, 2]``; labels: ``[R]`` in ``[0, C)``.
        cum_samples: ``[C]`` samples seen per class so far (the loss's own counter).
    Returns:
        ``[R]`` float32.
    """
    logits = class_logits.float()
    num_classes = logits.shape[1]
    labels = labels.long()
    one_hot = F.one_hot(labels, num_classes).float()
    weights = torch.ones_like(logits)
    if p > 0:
        counts = cum_samples.float().clamp(min=1)
        ratio = counts[None, :] / counts[:, None]  # [y, j] = N_j / N_y
        weights = weights * torch.where(ratio < 1.0, ratio.pow(p), torch.ones_like(ratio))[labels]
    if q > 0:
        scores = F.softmax(logits.detach(), dim=1)
        own = scores.gather(1, labels[:, None]).clamp(min=eps)
        ratio = scores / own
        weights = weights * torch.where(ratio > 1.0, ratio.pow(q), torch.ones_like(ratio))
    adjusted = logits + weights.log() * (1 - one_hot)
    class_term = F.cross_entropy(adjusted, labels, reduction="none")
    objectness = objectness_logits.float()
    objectness_term = F.cross_entropy(objectness, torch.zeros_like(labels), reduction="none")
    return class_term + objectness_term
