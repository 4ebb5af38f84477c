"""Open-set evaluation: the feature distribution score Fd (seed 000's reward term), known-vs-
unknown scores, AUROC and OSCR, all in plain torch (no scikit-learn).

Fd (the patent leaves its form open, para. 0037): with class centers c_j and features f_i,
    r  = mean_i ||f_i - c_{y_i}|| / mean_{j<k} ||c_j - c_k||      (intra spread / center spacing)
    Fd = 1 / (1 + r)  in (0, 1]; 1 = every feature on its center.
It is invariant to scaling the feature space (f, c -> s f, s c), so rho does not have to
track the embedding's magnitude, and it grows as the center loss (intra spread) shrinks.
"""
from __future__ import annotations

from typing import Any

import torch

from nascore.registry import Registry

SCORES: Registry = Registry("open-set score")


def feature_distribution_score(features: torch.Tensor, labels: torch.Tensor, centers: torch.Tensor) -> float:
    """Fd = 1 / (1 + mean intra-class distance / mean pairwise center distance)."""
    intra = (features - centers[labels]).norm(dim=1).mean()
    present = torch.unique(labels)
    c = centers[present]
    if len(c) < 2:
        raise ValueError("Fd needs features of at least two classes")
    d = torch.cdist(c, c)
    inter = d[torch.triu_indices(len(c), len(c), 1).unbind()].mean()
    return float(1.0 / (1.0 + intra / inter.clamp_min(1e-12)))


@SCORES.register("msp")
def max_softmax(logits: torch.Tensor, features: torch.Tensor, centers: torch.Tensor) -> torch.Tensor:
    """Maximum softmax probability (Hendrycks & Gimpel 2017): higher = more likely known."""
    return logits.softmax(1).max(1).values


@SCORES.register("center_distance")
def center_distance(logits: torch.Tensor, features: torch.Tensor, centers: torch.Tensor) -> torch.Tensor:
    """Minus the distance to the nearest class center: higher = more likely known."""
    return -torch.cdist(features.float(), centers.float()).min(1).values


def auroc(known: torch.Tensor, unknown: torch.Tensor) -> float:
    """P(score_known > score_unknown) + 1/2 P(tie): the area under the ROC curve of known
    (positive) vs unknown, via the Mann-Whitney rank statistic with average ranks for ties."""
    s = torch.cat([known, unknown]).double()
    order = torch.argsort(s)
    ranks = torch.empty_like(s)
    sorted_s = s[order]
    i = 0
    n = len(s)
    while i < n:  # average ranks over runs of ties
        j = i
        while j + 1 < n and sorted_s[j + 1] == sorted_s[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    n1, n0 = len(known), len(unknown)
    return float((ranks[:n1].sum() - n1 * (n1 + 1) / 2.0) / (n1 * n0))


def oscr(known_scores: torch.Tensor, known_correct: torch.Tensor, unknown_scores: torch.Tensor) -> float:
    """Open-set classification rate (Dhamija et al. 2018): area under CCR(FPR) as the threshold
    sweeps over all scores, CCR = share of known samples correctly classified with score >= t,
    FPR = share of unknown samples with score >= t."""
    scores = torch.cat([known_scores, unknown_scores]).double()
    correct = torch.cat([known_correct.bool(), torch.zeros(len(unknown_scores), dtype=torch.bool)])
    is_unknown = torch.cat([torch.zeros(len(known_scores)), torch.ones(len(unknown_scores))])
    order = torch.argsort(scores, descending=True)
    s = scores[order]
    ccr = torch.cumsum(correct[order].double(), 0) / max(len(known_scores), 1)
    fpr = torch.cumsum(is_unknown[order].double(), 0) / max(len(unknown_scores), 1)
    last_of_tie = torch.ones(len(s), dtype=torch.bool)  # one curve point per distinct threshold
    last_of_tie[:-1] = s[1:] != s[:-1]
    ccr = torch.cat([torch.zeros(1, dtype=torch.double), ccr[last_of_tie]])
    fpr = torch.cat([torch.zeros(1, dtype=torch.double), fpr[last_of_tie]])
    return float(((fpr[1:] - fpr[:-1]) * (ccr[1:] + ccr[:-1]) / 2.0).sum())


@torch.no_grad()
def collect(model, batches) -> dict[str, torch.Tensor]:
    """Logits, embedding features and labels of every image in epoch 0 of `batches`."""
    was = model.training
    model.eval()
    out: dict[str, list[torch.Tensor]] = {"logits": [], "features": [], "labels": []}
    for x, y in batches.epoch(0):
        f = model.forward_features(x).float()
        out["features"].append(f)
        out["logits"].append(model.classifier(f).float())
        out["labels"].append(y)
    model.train(was)
    return {k: torch.cat(v) for k, v in out.items()}


def open_set_metrics(known: dict[str, torch.Tensor], unknown: dict[str, torch.Tensor],
                     centers: torch.Tensor) -> dict[str, Any]:
    """Closed-set accuracy on known, and AUROC / OSCR of every registered score."""
    correct = known["logits"].argmax(1) == known["labels"]
    k = min(5, known["logits"].shape[1])
    top5 = (known["logits"].topk(k, dim=1).indices == known["labels"][:, None]).any(1)
    metrics: dict[str, Any] = {"closed_acc": float(correct.double().mean()),
                               "closed_top5_acc": float(top5.double().mean())}
    for name in SCORES:
        fn = SCORES[name]
        sk = fn(known["logits"], known["features"], centers)
        su = fn(unknown["logits"], unknown["features"], centers)
        metrics[f"auroc_{name}"] = auroc(sk, su)
        metrics[f"oscr_{name}"] = oscr(sk, correct, su)
    return metrics
