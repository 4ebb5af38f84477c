"""Methods: one small module per paper, composing nascore pieces. `METHODS.get("darts")`."""
from nascore.methods.base import METHODS, Method

# importing registers the methods
from nascore.methods import darts, mldarts, openset_rl, stacnas, vgg_rl  # noqa: E402,F401

__all__ = ["METHODS", "Method"]
