"""Search strategies: how architecture parameters and weights are optimised."""
from nascore.strategies.darts import STRATEGIES, DifferentiableSearch

__all__ = ["STRATEGIES", "DifferentiableSearch"]
