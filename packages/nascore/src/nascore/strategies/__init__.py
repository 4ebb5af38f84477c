"""Search strategies: how architecture parameters and weights are optimised. Each module registers
its strategies in STRATEGIES (a method's `search.strategy` names one); all are imported here."""
from nascore.registry import import_modules
from nascore.strategies.darts import STRATEGIES, DifferentiableSearch

import_modules(__name__, __path__)

__all__ = ["STRATEGIES", "DifferentiableSearch"]
