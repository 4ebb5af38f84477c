"""Mixed ops: an edge of the supernet, sum_k w_k * op_k(x) (DARTS eq. 2).

`MIXED_OPS` maps an implementation name to its class so the supernet can pick one from
params; "reference" is the plain loop over candidates, as in the original DARTS code.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from nascore.ops.primitives import OPS
from nascore.registry import Registry

MIXED_OPS: Registry = Registry("mixed op implementation")


@MIXED_OPS.register("reference")
class MixedOp(nn.Module):
    """The plain loop: every candidate op applied to x, weighted by the edge's weights."""

    def __init__(self, C: int, stride: int, primitives: Sequence[str]) -> None:
        super().__init__()
        self.primitives = list(primitives)
        self._ops = nn.ModuleList()
        for name in self.primitives:
            op = OPS[name](C, stride, False)
            if "pool" in name:  # pools get an affine-free BN, as in DARTS' search model
                op = nn.Sequential(op, nn.BatchNorm2d(C, affine=False))
            self._ops.append(op)

    def forward(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        return sum(w * op(x) for w, op in zip(weights, self._ops))
