"""The DARTS cell space as a token language for an RL controller (ENAS micro search, Pham et al.
2018, sec. 2.3): per cell and per intermediate node, an input, its op, a second input, its op.

Tokens `in0 .. in{steps+1}` name a node's inputs (0 and 1: the two previous cells' outputs, 2+:
earlier nodes of this cell); op tokens are the space's primitives except `none`. A node takes two
distinct inputs, so a sampled architecture is a genotype the DARTS network builder trains as is."""
from __future__ import annotations

from typing import Sequence

from nascore.controllers.grammar import GrammarError, TokenGrammar
from nascore.genotype import CellGenotype, Genotype
from nascore.spaces.darts import CellSpace

SLOTS = ("input", "op", "input", "op")  # per node


class CellGrammar(TokenGrammar):
    """Cells in `cells` order (e.g. normal, reduce), each `space.steps` nodes of 4 tokens."""

    def __init__(self, space: CellSpace, cells: Sequence[str]) -> None:
        if space.edges_per_node != 2:
            raise ValueError(f"a cell grammar samples two inputs per node; the space has {space.edges_per_node}")
        self.space, self.cells = space, list(cells)
        self.ops = [op for op in space.primitives if op != "none"]
        self.inputs = [f"in{i}" for i in range(space.steps + 1)]
        self.vocab = tuple(self.inputs + self.ops)
        self._per_cell = 4 * space.steps

    @property
    def length(self) -> int:
        return self._per_cell * len(self.cells)

    @property
    def num_slots(self) -> int:  # the policy embeds where in a cell a token stands (shared by the cells)
        return self._per_cell

    def slot(self, t: int) -> int:
        return t % self._per_cell

    def legal(self, prefix: Sequence[int]) -> Sequence[int]:
        pos = len(prefix) % self._per_cell
        node, k = divmod(pos, 4)
        if SLOTS[k] == "op":
            return list(range(len(self.inputs), len(self.vocab)))
        first = int(prefix[-2]) if k == 2 else None  # the node's first input, taken already
        return [i for i in range(node + 2) if i != first]

    def to_genotype(self, ids: Sequence[int]) -> Genotype:
        self.check(ids)
        concat = tuple(range(2 + self.space.steps - self.space.multiplier, 2 + self.space.steps))
        cells = {}
        for c, name in enumerate(self.cells):
            part = [int(i) for i in ids[c * self._per_cell:(c + 1) * self._per_cell]]
            edges = tuple((self.vocab[part[i + 1]], part[i]) for i in range(0, len(part), 2))
            cells[name] = CellGenotype(edges=edges, concat=concat)
        return Genotype(cells)

    def from_genotype(self, genotype: Genotype) -> list[int]:
        ids: list[int] = []
        for name in self.cells:
            for op, src in genotype.cells[name].edges:
                if op not in self.ops:
                    raise GrammarError(f"cell {name!r}: op {op!r} is not in this grammar's ops {self.ops}")
                ids += [src, self.vocab.index(op)]
        self.check(ids)
        return ids
