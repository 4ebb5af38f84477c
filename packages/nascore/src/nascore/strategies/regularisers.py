"""Extra terms of the architecture objective, as callables model -> scalar tensor."""
from __future__ import annotations

import torch
from torch import nn


def architecture_entropy(model: nn.Module) -> torch.Tensor:
    """L_entropy = - sum over groups, edges and ops of p ln p, p = softmax(alpha) (seed 002, eq. 6)."""
    total = 0.0
    for p in model.alpha_probs().values():
        total = total + -(p * torch.log(p.clamp_min(1e-20))).sum()
    return total


def entropy_regulariser(gamma: float):
    """gamma * L_entropy, the term added to L_val in seed 002, eq. 7 (gamma = 1 in the paper)."""
    def reg(model: nn.Module) -> torch.Tensor:
        return gamma * architecture_entropy(model)
    return reg
