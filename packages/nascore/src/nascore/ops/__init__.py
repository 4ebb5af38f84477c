"""Candidate operations and mixed ops (MIXED_OPS: reference loop, fused, auto)."""
from nascore.ops.mixed import MIXED_OPS, MixedOp
from nascore.ops.primitives import OPS, FactorizedReduce, ReLUConvBN
from nascore.ops import batched, fused  # noqa: E402,F401  (register "batched", "fused", "auto")

__all__ = ["OPS", "MIXED_OPS", "MixedOp", "FactorizedReduce", "ReLUConvBN"]
