"""Supernets: every candidate op on every edge, weighted by architecture parameters."""
from nascore.supernets.darts import SUPERNETS, DartsSupernet, reduction_layers
from nascore.supernets.grouped import GroupedSupernet
from nascore.supernets.multilevel import MultiLevelSupernet

__all__ = ["SUPERNETS", "DartsSupernet", "GroupedSupernet", "MultiLevelSupernet", "reduction_layers"]
