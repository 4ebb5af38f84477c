"""Candidate operations and mixed ops."""
from nascore.ops.mixed import MIXED_OPS, MixedOp
from nascore.ops.primitives import OPS, FactorizedReduce, ReLUConvBN

__all__ = ["OPS", "MIXED_OPS", "MixedOp", "FactorizedReduce", "ReLUConvBN"]
