"""Supernets: every candidate op on every edge, weighted by architecture parameters."""
from nascore.supernets.darts import SUPERNETS, DartsSupernet, reduction_layers

__all__ = ["SUPERNETS", "DartsSupernet", "reduction_layers"]
