"""One trainer for search, generation and fine-tuning; strategies plug in."""
from nascore.train.loop import CheckpointHook, Divergence, Hook, Trainer

__all__ = ["Trainer", "Hook", "CheckpointHook", "Divergence"]
