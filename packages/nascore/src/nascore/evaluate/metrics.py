"""Accuracy metrics computed on device, one host sync at the end."""
from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn


@torch.no_grad()
def topk_errors(model: nn.Module, batches, ks: tuple[int, ...] = (1, 5),
                channels_last: bool = False, data_parallel: bool = False) -> dict[str, float]:
    """Top-k error rates in percent over all batches of epoch 0 of `batches`."""
    was = model.training
    model.eval()
    correct = {k: 0 for k in ks}
    n = 0
    for x, y in batches.epoch(0):
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        logits = model(x)
        logits = logits[0] if isinstance(logits, tuple) else logits
        top = logits.topk(min(max(ks), logits.shape[1]), dim=1).indices
        hits = top == y[:, None]
        for k in ks:
            correct[k] = correct[k] + hits[:, :k].any(dim=1).sum()
        n += len(y)
    model.train(was)
    if data_parallel:  # each process scored its share of the images: sum the counts
        counts = torch.tensor([float(correct[k]) for k in ks] + [float(n)], dtype=torch.float64)
        counts = counts.to(next(model.parameters()).device)
        dist.all_reduce(counts)
        correct, n = dict(zip(ks, counts[:-1].tolist())), int(counts[-1])
    return {f"top{k}_err": 100.0 * (1.0 - float(correct[k]) / max(n, 1)) for k in ks}
