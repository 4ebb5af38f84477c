"""The DARTS search network (Liu et al. 2019, sec. 3.1.1): a stack of cells whose edges are
mixed ops, reductions at 1/3 and 2/3 of the depth, one alpha matrix per alpha group.

An edge may hold a subset of the space's primitives (`edge_ops`, per alpha group): its alpha
row keeps one column per primitive, the others masked to -inf, so softmax gives them exactly 0
and derivation, plots and checkpoints see one matrix shape for every edge."""
from __future__ import annotations

from typing import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from nascore.genotype import Genotype
from nascore.ops import MIXED_OPS, FactorizedReduce, ReLUConvBN
from nascore.ops.batched import WeightBank
from nascore.registry import Registry
from nascore.spaces.darts import CellSpace

SUPERNETS: Registry = Registry("supernet")


def reduction_layers(layers: int) -> tuple[int, int]:
    """Indices of the two reduction cells: at 1/3 and 2/3 of the depth."""
    return layers // 3, 2 * layers // 3


class SearchCell(nn.Module):
    """A cell whose every edge is a mixed op over the space's primitives."""

    def __init__(self, space: CellSpace, C_pp: int, C_p: int, C: int, reduction: bool,
                 reduction_prev: bool, mixed_op: str,
                 edge_ops: Sequence[Sequence[str]] | None = None) -> None:
        super().__init__()
        self.space, self.reduction = space, reduction
        self.preprocess0 = (FactorizedReduce(C_pp, C, affine=False) if reduction_prev
                            else ReLUConvBN(C_pp, C, 1, 1, 0, affine=False))
        self.preprocess1 = ReLUConvBN(C_p, C, 1, 1, 0, affine=False)
        op_cls = MIXED_OPS[mixed_op]
        ops = edge_ops or [space.primitives] * space.num_edges
        self.edges = nn.ModuleList(
            op_cls(C, 2 if reduction and src < 2 else 1, ops[i])
            for i, (_, src) in enumerate(space.edges()))
        # a mixed op with a cell-level implementation (ops/batched.py) computes all edges at once
        cell = getattr(op_cls, "cell", None)
        self.batched = (cell((self.preprocess0, self.preprocess1), space.edges(), self.edges, space.primitives,
                             C, reduction, space.multiplier) if cell is not None else None)
        # columns of the alpha row each edge reads (buffers, so they live on the module's device);
        # without edge_ops an edge reads its whole row
        self.subset = edge_ops is not None
        for i, e in enumerate(edge_ops or []):
            self.register_buffer(f"cols_{i}", torch.tensor([space.primitives.index(op) for op in e]),
                                 persistent=False)

    def edge_weights(self, weights: torch.Tensor, i: int) -> torch.Tensor:
        return weights[i, getattr(self, f"cols_{i}")] if self.subset else weights[i]

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, weights: torch.Tensor,
                conv_weights: tuple | None = None) -> torch.Tensor:
        if self.batched is not None:
            return self.batched(s0, s1, weights, conv_weights)
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        offset = 0
        for j in range(self.space.steps):
            n_in = len(states)
            states.append(sum(self.edges[offset + i](h, self.edge_weights(weights, offset + i))
                              for i, h in enumerate(states)))
            offset += n_in
        return torch.cat(states[-self.space.multiplier:], dim=1)


@SUPERNETS.register("darts")
class DartsSupernet(nn.Module):
    """DARTS' search model. Subclasses change `alpha_key` to decouple cells (e.g. per level).

    `edge_ops` maps an alpha group to the candidate ops of each of its edges (a subset of
    `space.primitives`, in alpha row order); groups not in it hold every primitive."""

    def __init__(self, C: int, num_classes: int, layers: int, space: CellSpace | None = None,
                 stem_multiplier: int = 3, mixed_op: str = "reference",
                 edge_ops: Mapping[str, Sequence[Sequence[str]]] | None = None) -> None:
        super().__init__()
        if layers < 3:
            raise ValueError(f"a DARTS supernet needs >= 3 layers (two reductions), got {layers}")
        self.space = space or CellSpace()
        self.C, self.layers, self.num_classes = C, layers, num_classes
        edge_ops = dict(edge_ops or {})
        for key, ops in edge_ops.items():
            self._check_edge_ops(key, ops)
        C_curr = stem_multiplier * C
        self.stem = nn.Sequential(nn.Conv2d(3, C_curr, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(C_curr))
        C_pp, C_p, C_curr = C_curr, C_curr, C
        self.cells = nn.ModuleList()
        self.cell_keys: list[str] = []
        reduction_prev = False
        reductions = reduction_layers(layers)
        for i in range(layers):
            reduction = i in reductions
            if reduction:
                C_curr *= 2
            key = self.alpha_key(i, reduction)
            self.cells.append(SearchCell(self.space, C_pp, C_p, C_curr, reduction, reduction_prev,
                                         mixed_op, edge_ops.get(key)))
            self.cell_keys.append(key)
            reduction_prev = reduction
            C_pp, C_p = C_p, self.space.multiplier * C_curr
        batched = [cell.batched for cell in self.cells if cell.batched is not None]
        # a batched mixed op: every cell's conv weights assembled at once per forward
        self.weight_bank = WeightBank(batched) if batched else None
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(C_p, num_classes)
        n_ops = len(self.space.primitives)
        self.alphas = nn.ParameterDict({
            key: nn.Parameter(1e-3 * torch.randn(self.space.num_edges, n_ops))
            for key in dict.fromkeys(self.cell_keys)})
        unknown = set(edge_ops) - set(self.alphas)
        if unknown:
            raise ValueError(f"edge_ops for unknown alpha groups {sorted(unknown)}; this supernet has "
                             f"{sorted(self.alphas)}")
        self.masked = sorted(edge_ops)
        for key, ops in edge_ops.items():
            mask = torch.tensor([[op in e for op in self.space.primitives] for e in ops])
            self.register_buffer(f"mask_{key}", mask)

    @classmethod
    def from_config(cls, s, num_classes: int, space: CellSpace, *, C: int | None = None, layers: int | None = None,
                    **kwargs) -> "DartsSupernet":
        """Build from a method's supernet params `s` (C, layers, stem_multiplier, mixed_op): the one place
        where they become arguments. C / layers override s's (e.g. a second search stage's sizes);
        kwargs are the subclass's own (edge_ops, group_prior, ...)."""
        return cls(C or s.C, num_classes, layers or s.layers, space, s.stem_multiplier, s.mixed_op, **kwargs)

    def _check_edge_ops(self, key: str, ops: Sequence[Sequence[str]]) -> None:
        if len(ops) != self.space.num_edges:
            raise ValueError(f"edge_ops[{key!r}]: {len(ops)} edges given, the cell has {self.space.num_edges}")
        for i, e in enumerate(ops):
            bad = [op for op in e if op not in self.space.primitives]
            if bad or not e or len(set(e)) != len(e):
                raise ValueError(f"edge_ops[{key!r}][{i}] = {list(e)}: need distinct ops from "
                                 f"{list(self.space.primitives)}")

    def alpha_key(self, index: int, reduction: bool) -> str:
        """The alpha group a cell reads: DARTS shares one for normal and one for reduce cells."""
        return "reduce" if reduction else "normal"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        probs = self.alpha_probs()
        conv = self.weight_bank() if self.weight_bank is not None else [None] * len(self.cells)
        s0 = s1 = self.stem(x)
        for cell, key, w in zip(self.cells, self.cell_keys, conv):
            s0, s1 = s1, cell(s0, s1, probs[key], w)
        return self.classifier(self.global_pooling(s1).flatten(1))

    def alpha_probs(self) -> dict[str, torch.Tensor]:
        """softmax(alpha) per group: the edge weights of eq. 2 (0 for ops an edge does not hold)."""
        return {k: F.softmax(a if k not in self.masked
                             else a.masked_fill(~getattr(self, f"mask_{k}"), float("-inf")), dim=-1)
                for k, a in self.alphas.items()}

    def arch_parameters(self) -> list[nn.Parameter]:
        return list(self.alphas.values())

    def weight_parameters(self) -> list[nn.Parameter]:
        arch = {id(p) for p in self.arch_parameters()}
        return [p for p in self.parameters() if id(p) not in arch]

    def named_weight_parameters(self) -> list[tuple[str, nn.Parameter]]:
        return [(n, p) for n, p in self.named_parameters() if not n.startswith("alphas.")]

    def derivation_weights(self) -> dict[str, torch.Tensor]:
        """What derivation ranks ops and edges by: softmax(alpha), as DARTS does."""
        return self.alpha_probs()

    def genotype(self) -> Genotype:
        """Derive one cell per alpha group."""
        return Genotype(cells={k: self.space.derive(p) for k, p in self.derivation_weights().items()},
                        space="darts")
