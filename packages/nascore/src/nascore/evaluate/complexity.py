"""Parameter counts and multiply-accumulates, via torch.utils.flop_counter."""
from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def count_params(model: nn.Module, exclude_prefixes: tuple[str, ...] = ("auxiliary_head.",)) -> int:
    """Trainable parameters, the auxiliary head excluded (as DARTS and its successors report)."""
    return sum(p.numel() for n, p in model.named_parameters()
               if p.requires_grad and not n.startswith(exclude_prefixes))


@torch.no_grad()
def count_macs(model: nn.Module, input_size: tuple[int, int, int]) -> int:
    """Multiply-accumulates of one inference forward pass at batch 1 (FLOPs / 2)."""
    was_training = model.training
    model.eval()
    try:
        x = torch.zeros(1, *input_size, device=next(model.parameters()).device)
        with FlopCounterMode(display=False) as counter:
            model(x)
    finally:
        model.train(was_training)
    return counter.get_total_flops() // 2
