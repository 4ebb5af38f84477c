"""Extra terms of the architecture objective, as callables model -> scalar tensor."""
from __future__ import annotations

import torch
from torch import nn


def edge_entropy(p: torch.Tensor) -> torch.Tensor:
    """- sum_ops p ln p for every edge (row) of a softmax(alpha) matrix."""
    return -(p * torch.log(p.clamp_min(1e-20))).sum(-1)


def architecture_entropy(model: nn.Module) -> torch.Tensor:
    """L_entropy = - sum over groups, edges and ops of p ln p, p = softmax(alpha) (seed 002, eq. 6)."""
    return sum(edge_entropy(p).sum() for p in model.alpha_probs().values())


def entropy_regulariser(gamma: float):
    """gamma * L_entropy, the term added to L_val in seed 002, eq. 7 (gamma = 1 in the paper)."""
    def reg(model: nn.Module) -> torch.Tensor:
        return gamma * architecture_entropy(model)
    return reg
