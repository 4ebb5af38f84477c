"""nascore: the shared library of nas-repro."""

__version__ = "0.1.0"
