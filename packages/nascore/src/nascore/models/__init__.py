"""Derived (evaluation) networks, built by name: `create_model("darts_cifar", genotype=...)`."""
from nascore.models.darts import MODELS, NetworkCIFAR, NetworkImageNet, create_model

__all__ = ["MODELS", "create_model", "NetworkCIFAR", "NetworkImageNet"]
