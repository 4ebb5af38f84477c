"""A weight-sharing supernet that runs one sampled architecture at a time (Li & Talwalkar 2019;
ENAS, Pham et al. 2018): the DARTS search network's cells and candidate ops, but a forward pass
computes only the edges and ops of `path` (a genotype of the cell space). Every architecture
reads the same weights: an op's weights are trained by every sampled path that uses it.

Needs the plain mixed op (`mixed_op: reference`), whose candidates are separate modules."""
from __future__ import annotations

import torch

from nascore.genotype import CellGenotype, Genotype
from nascore.ops import MIXED_OPS
from nascore.supernets.darts import SUPERNETS, DartsSupernet, SearchCell


@SUPERNETS.register("paths")
class PathSupernet(DartsSupernet):
    """`net.path = genotype; net(x)`: the logits of that architecture with the shared weights."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        reference = MIXED_OPS["reference"]
        if any(cell.batched is not None or type(edge) is not reference for cell in self.cells for edge in cell.edges):
            raise ValueError("a path supernet runs single candidate ops: build it with mixed_op 'reference'")
        self.op_index = {op: i for i, op in enumerate(self.space.primitives)}
        self.path: Genotype | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.path is None:
            raise RuntimeError("PathSupernet: set `path` (a genotype of its cell space) before the forward pass")
        s0 = s1 = self.stem(x)
        for cell, key in zip(self.cells, self.cell_keys):
            s0, s1 = s1, self._cell(cell, self.path.cells[key], s0, s1)
        return self.classifier(self.global_pooling(s1).flatten(1))

    def _cell(self, cell: SearchCell, genotype: CellGenotype, s0: torch.Tensor, s1: torch.Tensor) -> torch.Tensor:
        states = [cell.preprocess0(s0), cell.preprocess1(s1)]
        offset = 0  # the first edge of node j in the supernet's edge order (sources 0 .. j+1)
        for j, node in enumerate(genotype.nodes):
            states.append(sum(cell.edges[offset + src]._ops[self.op_index[op]](states[src]) for op, src in node))
            offset += j + 2
        return torch.cat([states[i] for i in genotype.concat], dim=1)
