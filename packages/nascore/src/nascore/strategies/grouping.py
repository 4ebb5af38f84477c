"""Operator groups for two-stage grouped search (StacNAS; seed 004, claims 1-5).

Stage 1 puts one representative per group on every edge; the group whose representative
wins an edge is "activated" there, and stage 2 puts all of that group's ops on the edge.
Groups come from params or, claim 2, from clustering the candidate ops by how correlated
their outputs are on a warmed-up supernet.
"""
from __future__ import annotations

from typing import Iterable, Mapping, Sequence

import torch
from torch import nn

ZERO = "none"


def representatives(groups: Sequence[Sequence[str]]) -> list[str]:
    """Stage-1 op of each group: its first member (claim 3)."""
    return [g[0] for g in groups]


def activated_groups(probs: torch.Tensor, primitives: Sequence[str],
                     groups: Sequence[Sequence[str]]) -> list[int]:
    """Per edge (row of softmax(alpha)), the index of the group whose op has the largest weight,
    the zero op excluded (claim 4)."""
    member = {op: gi for gi, g in enumerate(groups) for op in g}
    cols = [k for k, op in enumerate(primitives) if op != ZERO]
    if any(primitives[k] not in member for k in cols):
        raise ValueError(f"ops {[primitives[k] for k in cols if primitives[k] not in member]} are in no group")
    best = probs[:, cols].argmax(dim=1)
    return [member[primitives[cols[int(b)]]] for b in best]


def stage2_edge_ops(stage1_probs: Mapping[str, torch.Tensor], stage1_primitives: Sequence[str],
                    groups: Sequence[Sequence[str]], zero: bool) -> tuple[dict[str, list[list[str]]],
                                                                         dict[str, list[int]]]:
    """Stage-2 candidates per alpha group and edge: every op of the activated group (+ the zero
    op when the space has one). Also returns the activated group index per edge."""
    edge_ops, active = {}, {}
    for key, p in stage1_probs.items():
        active[key] = activated_groups(p, stage1_primitives, groups)
        edge_ops[key] = [([ZERO] if zero else []) + list(groups[g]) for g in active[key]]
    return edge_ops, active


# -- claim 2: groups by clustering ---------------------------------------------------------------
@torch.no_grad()
def op_correlation(model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
                   primitives: Sequence[str]) -> torch.Tensor:
    """Mean Pearson correlation between the outputs of every pair of candidate ops, over every
    edge of every cell and the given batches. Ops are read from each mixed op's `_ops` list,
    which must hold `primitives` in order (a supernet without edge_ops)."""
    n = len(primitives)
    total, count = torch.zeros(n, n, dtype=torch.float64), 0
    outputs: list[list[torch.Tensor]] = []

    def keep(_module, _inp, out):
        outputs[-1].append(out.detach().flatten().double())

    handles = []
    for m in model.modules():
        ops = getattr(m, "_ops", None)
        if isinstance(ops, nn.ModuleList) and len(ops) == n:
            handles.append(m.register_forward_pre_hook(lambda *_: outputs.append([])))
            handles.extend(op.register_forward_hook(keep) for op in ops)
    if not handles:
        raise ValueError("no mixed op holding every primitive found; build the supernet without edge_ops")
    was = model.training
    model.eval()
    try:
        for x, _ in batches:
            outputs.clear()
            model(x)
            for outs in outputs:
                z = torch.stack(outs)
                z = z - z.mean(dim=1, keepdim=True)
                norm = z.norm(dim=1, keepdim=True)
                z = torch.where(norm > 0, z / norm.clamp_min(1e-12), z)  # `none`: all zeros, corr 0
                total += z @ z.T
                count += 1
    finally:
        for h in handles:
            h.remove()
        model.train(was)
    return (total / max(count, 1)).float()


def cluster_ops(primitives: Sequence[str], corr: torch.Tensor, threshold: float) -> list[list[str]]:
    """Average-linkage agglomerative clustering on distance 1 - corr: merge the closest pair of
    clusters while their mean distance is below `threshold`. Groups keep the primitives' order;
    the zero op is never grouped (it joins every edge instead)."""
    idx = [k for k, op in enumerate(primitives) if op != ZERO]
    clusters = [[k] for k in idx]
    dist = 1.0 - corr.double()

    def linkage(a: list[int], b: list[int]) -> float:
        return float(dist[a][:, b].mean())

    while len(clusters) > 1:
        d, i, j = min((linkage(a, b), i, j) for i, a in enumerate(clusters)
                      for j, b in enumerate(clusters) if i < j)
        if d >= threshold:
            break
        clusters[i] = sorted(clusters[i] + clusters[j])
        del clusters[j]
    return [[primitives[k] for k in c] for c in sorted(clusters)]
