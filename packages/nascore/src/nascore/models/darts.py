"""Evaluation networks stacked from derived cells (DARTS sec. 3.2; model.py of the paper).

Cells are picked from the genotype per position (`Genotype.cell_for`), so a multi-level
genotype (one normal cell per level) builds level by level with the same code.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from nascore.genotype import CellGenotype, Genotype
from nascore.ops import OPS, FactorizedReduce, ReLUConvBN
from nascore.registry import Registry
from nascore.supernets.darts import reduction_layers

MODELS: Registry = Registry("model")


class EvalCell(nn.Module):
    """A fixed cell: each node sums its chosen ops; drop-path on every non-identity op."""

    def __init__(self, cell: CellGenotype, C_pp: int, C_p: int, C: int, reduction: bool,
                 reduction_prev: bool) -> None:
        super().__init__()
        self.reduction = reduction
        self.preprocess0 = FactorizedReduce(C_pp, C) if reduction_prev else ReLUConvBN(C_pp, C, 1, 1, 0)
        self.preprocess1 = ReLUConvBN(C_p, C, 1, 1, 0)
        self.k = cell.edges_per_node
        self.sources = [src for _, src in cell.edges]
        self.concat = list(cell.concat)
        self.ops = nn.ModuleList(OPS[name](C, 2 if reduction and src < 2 else 1, True)
                                 for name, src in cell.edges)
        self.multiplier = len(self.concat)

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, keep: torch.Tensor | None) -> torch.Tensor:
        """keep: the drop-path keep probability (0-d tensor), or None for no drop-path."""
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        for start in range(0, len(self.ops), self.k):
            total = 0
            for op, src in zip(self.ops[start:start + self.k], self.sources[start:start + self.k]):
                h = op(states[src])
                if keep is not None and not isinstance(op, nn.Identity):
                    h = drop_path(h, keep)
                total = total + h
            states.append(total)
        return torch.cat([states[i] for i in self.concat], dim=1)


def drop_path(x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Zero whole samples with probability 1 - keep and scale the rest by 1 / keep (DARTS utils.py).
    keep is a 0-d tensor, so the per-epoch ramp changes a value, never a torch.compile'd graph."""
    shape = (x.shape[0],) + (1,) * (x.dim() - 1)
    mask = (torch.rand(shape, device=x.device) < keep).to(x.dtype)
    return x * mask / keep.to(x.dtype)


class AuxiliaryHead(nn.Module):
    """The auxiliary classifier after the 2/3 reduction (input 8x8 on CIFAR, 7x7 on ImageNet). The authors'
    ImageNet head has no BatchNorm after its 768-channel conv (commented out in their model.py to match the
    paper's runs): `final_bn=False` there."""

    def __init__(self, C: int, num_classes: int, pool_stride: int, final_bn: bool = True) -> None:
        super().__init__()
        self.pool = nn.AvgPool2d(5, stride=pool_stride, padding=0, count_include_pad=False)
        self.features = nn.Sequential(
            nn.Conv2d(C, 128, 1, bias=False), nn.BatchNorm2d(128), nn.ReLU(inplace=True),
            nn.Conv2d(128, 768, 2, bias=False), *([nn.BatchNorm2d(768)] if final_bn else []), nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d(1))
        self.classifier = nn.Linear(768, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(x)
        # reduced-resolution profiles can leave < 5 px here; pool to the 2x2 the head expects
        x = self.pool(x) if min(x.shape[-2:]) >= 5 else nn.functional.adaptive_avg_pool2d(x, 2)
        return self.classifier(self.features(x).flatten(1))


class _CellNetwork(nn.Module):
    """Stem -> cells (reductions at 1/3, 2/3) -> global pool -> classifier (+ auxiliary head)."""

    aux_pool_stride = 3
    aux_final_bn = True

    def __init__(self, genotype: Genotype, C: int, num_classes: int, layers: int,
                 auxiliary: bool, C_stem_out: int, C_curr: int, reduction_prev: bool) -> None:
        super().__init__()
        self.genotype, self.layers = genotype, layers
        self.register_buffer("keep_prob", torch.ones(()), persistent=False)  # 1 - drop_path_prob
        self.drop_path_prob = 0.0
        C_pp, C_p = C_stem_out, C_stem_out
        self.cells = nn.ModuleList()
        reductions = reduction_layers(layers)
        self.aux_index = reductions[1]
        C_aux = None
        for i in range(layers):
            reduction = i in reductions
            if reduction:
                C_curr *= 2
            level = sum(i > r for r in reductions)
            cell = genotype.cell_for(reduction, level=level,
                                     reduction_index=reductions.index(i) if reduction else 0)
            built = EvalCell(cell, C_pp, C_p, C_curr, reduction, reduction_prev)
            self.cells.append(built)
            reduction_prev = reduction
            C_pp, C_p = C_p, built.multiplier * C_curr
            if i == self.aux_index:
                C_aux = C_p
        self.auxiliary_head = (AuxiliaryHead(C_aux, num_classes, self.aux_pool_stride, self.aux_final_bn)
                               if auxiliary else None)
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(C_p, num_classes)

    @property
    def drop_path_prob(self) -> float:
        return self._drop_path_prob

    @drop_path_prob.setter
    def drop_path_prob(self, p: float) -> None:
        """Set per epoch by the trainer (linear ramp); kept as a float and as the keep_prob tensor."""
        self._drop_path_prob = float(p)
        self.keep_prob.fill_(1.0 - float(p))

    def stem_forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        s0, s1 = self.stem_forward(x)
        logits_aux = None
        keep = self.keep_prob if self.training and self._drop_path_prob > 0 else None
        for i, cell in enumerate(self.cells):
            s0, s1 = s1, cell(s0, s1, keep)
            if i == self.aux_index and self.auxiliary_head is not None and self.training:
                logits_aux = self.auxiliary_head(s1)
        logits = self.classifier(self.global_pooling(s1).flatten(1))
        return (logits, logits_aux) if logits_aux is not None else logits

    def weight_parameters_without_aux(self) -> int:
        """Parameter count as papers report it: the auxiliary head excluded."""
        return sum(p.numel() for n, p in self.named_parameters() if not n.startswith("auxiliary_head."))


@MODELS.register("darts_cifar")
class NetworkCIFAR(_CellNetwork):
    """CIFAR evaluation network: 3x3 stem of 3C channels (paper: 20 cells, C=36)."""

    aux_pool_stride = 3
    aux_final_bn = True

    def __init__(self, genotype: Genotype, C: int = 36, num_classes: int = 10, layers: int = 20,
                 auxiliary: bool = True, stem_multiplier: int = 3) -> None:
        C_stem = stem_multiplier * C
        super().__init__(genotype, C, num_classes, layers, auxiliary, C_stem, C, False)
        self.stem = nn.Sequential(nn.Conv2d(3, C_stem, 3, padding=1, bias=False), nn.BatchNorm2d(C_stem))

    def stem_forward(self, x):
        s = self.stem(x)
        return s, s


@MODELS.register("darts_imagenet")
class NetworkImageNet(_CellNetwork):
    """ImageNet mobile-setting network: two stride-2 stems (x8 reduction), 14 cells, C=48."""

    aux_pool_stride = 2
    aux_final_bn = False  # the authors' AuxiliaryHeadImageNet: no BatchNorm2d(768)

    def __init__(self, genotype: Genotype, C: int = 48, num_classes: int = 1000, layers: int = 14,
                 auxiliary: bool = True) -> None:
        # stem1's output feeds the first cell as s1 and stem0's as s0 (already reduced)
        super().__init__(genotype, C, num_classes, layers, auxiliary, C, C, True)
        self.stem0 = nn.Sequential(
            nn.Conv2d(3, C // 2, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(C // 2),
            nn.ReLU(inplace=True),
            nn.Conv2d(C // 2, C, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(C))
        self.stem1 = nn.Sequential(nn.ReLU(inplace=True),
                                   nn.Conv2d(C, C, 3, stride=2, padding=1, bias=False),
                                   nn.BatchNorm2d(C))

    def stem_forward(self, x):
        s0 = self.stem0(x)
        return s0, self.stem1(s0)


def create_model(name: str, **kwargs: Any) -> nn.Module:
    """Build a registered evaluation network by name."""
    return MODELS[name](**kwargs)
