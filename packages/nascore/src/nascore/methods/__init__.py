"""Methods: one small module per paper, composing nascore pieces. `METHODS.get("darts")`.

Every module in this package is imported here, and importing one registers its method: a new
method is a new module, with no list to edit."""
import importlib
import pkgutil

from nascore.methods.base import METHODS, Method

for _module in sorted(m.name for m in pkgutil.iter_modules(__path__)):
    importlib.import_module(f"{__name__}.{_module}")

__all__ = ["METHODS", "Method"]
