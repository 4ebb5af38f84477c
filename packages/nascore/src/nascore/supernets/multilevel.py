"""Multi-level DARTS supernet (seed 002, sec. 1.2): the two reduction cells split the network
into low / mid / high levels; each level's normal cells and each reduction cell get their own
alpha, so cells at different depths no longer share (and couple through) one alpha matrix."""
from __future__ import annotations

from nascore.genotype import LEVELS
from nascore.supernets.darts import SUPERNETS, DartsSupernet, reduction_layers


@SUPERNETS.register("multilevel")
class MultiLevelSupernet(DartsSupernet):
    """Alpha groups normal_low, reduce_1, normal_mid, reduce_2, normal_high (seed 002, eq. 3)."""

    def __init__(self, C: int, num_classes: int, layers: int, *args, **kwargs) -> None:
        r1, r2 = reduction_layers(layers)
        if r1 < 1 or r2 - r1 < 2 or layers - r2 < 2:
            raise ValueError(f"a multi-level supernet needs a normal cell in every level: layers >= 5, got {layers}")
        super().__init__(C, num_classes, layers, *args, **kwargs)

    def alpha_key(self, index: int, reduction: bool) -> str:
        r1, r2 = reduction_layers(self.layers)
        if reduction:
            return "reduce_1" if index == r1 else "reduce_2"
        return f"normal_{LEVELS[(index > r1) + (index > r2)]}"
