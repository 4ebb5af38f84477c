"""Supernets: every candidate op on every edge, weighted by architecture parameters. Each module
registers its supernets in SUPERNETS; all are imported here."""
from nascore.registry import import_modules
from nascore.supernets.darts import SUPERNETS, DartsSupernet, reduction_layers
from nascore.supernets.grouped import GroupedSupernet
from nascore.supernets.multilevel import MultiLevelSupernet

import_modules(__name__, __path__)

__all__ = ["SUPERNETS", "DartsSupernet", "GroupedSupernet", "MultiLevelSupernet", "reduction_layers"]
