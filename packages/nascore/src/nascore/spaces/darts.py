"""The DARTS cell space (Liu et al. 2019, sec. 2.1): 2 input states, `steps` intermediate
nodes, every node fed by every earlier state, output = concat of the intermediate nodes."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from nascore.genotype import CellGenotype

PRIMITIVES = ("none", "max_pool_3x3", "avg_pool_3x3", "skip_connect",
              "sep_conv_3x3", "sep_conv_5x5", "dil_conv_3x3", "dil_conv_5x5")


@dataclass(frozen=True)
class CellSpace:
    """A DARTS-style cell: the graph, separate from any optimiser (NASLib style)."""

    primitives: tuple[str, ...] = PRIMITIVES
    steps: int = 4
    multiplier: int = 4
    edges_per_node: int = 2

    @property
    def num_edges(self) -> int:
        return sum(2 + i for i in range(self.steps))

    def edges(self) -> list[tuple[int, int]]:
        """(node, source state) per edge, in alpha row order; nodes are numbered from 2."""
        return [(2 + j, src) for j in range(self.steps) for src in range(2 + j)]

    def derive(self, weights: torch.Tensor) -> CellGenotype:
        """Per node keep the `edges_per_node` strongest edges, each with its argmax op
        excluding `none` (DARTS sec. 2.4)."""
        if weights.shape != (self.num_edges, len(self.primitives)):
            raise ValueError(f"weights of shape {tuple(weights.shape)}; expected "
                             f"({self.num_edges}, {len(self.primitives)})")
        w = weights.detach().float().cpu().clone()
        if "none" in self.primitives:
            w[:, self.primitives.index("none")] = float("-inf")
        edges: list[tuple[str, int]] = []
        start = 0
        for j in range(self.steps):
            rows = w[start:start + j + 2]
            strength, best_op = rows.max(dim=1)
            # ties break towards the lower input index, deterministically
            order = sorted(range(j + 2), key=lambda s: (-strength[s].item(), s))
            for src in order[: self.edges_per_node]:
                edges.append((self.primitives[int(best_op[src])], src))
            start += j + 2
        concat = tuple(range(2 + self.steps - self.multiplier, 2 + self.steps))
        return CellGenotype(edges=tuple(edges), concat=concat, edges_per_node=self.edges_per_node)
