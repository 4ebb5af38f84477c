"""Search spaces: which edges and candidate ops a cell has, and how a genotype is derived."""
from nascore.spaces.darts import PRIMITIVES, CellSpace

__all__ = ["CellSpace", "PRIMITIVES"]
