"""Methods: one small module per paper, composing nascore pieces. `METHODS.get("darts")`.

Every module in this package is imported here, and importing one registers its method: a new
method is a new module, with no list to edit."""
from nascore.methods.base import METHODS, Method
from nascore.registry import import_modules

import_modules(__name__, __path__)

__all__ = ["METHODS", "Method"]
