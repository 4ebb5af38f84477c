"""Training tasks the Trainer runs: supervised training of a derived network."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from nascore.runtime import check_layout


class SupervisedTask:
    """Cross-entropy (+ auxiliary head) with drop-path ramped linearly over epochs (DARTS train.py)."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler, *,
                 epochs: int, aux_weight: float, grad_clip: float, drop_path_prob: float,
                 label_smoothing: float = 0.0, autocast_dtype: torch.dtype | None = None,
                 channels_last: bool = False) -> None:
        self.model, self.optimizer, self.scheduler = model, optimizer, scheduler
        self.epochs, self.aux_weight, self.grad_clip = epochs, aux_weight, grad_clip
        self.drop_path_prob, self.label_smoothing = drop_path_prob, label_smoothing
        check_layout(model, autocast_dtype, channels_last)
        self.autocast_dtype, self.channels_last = autocast_dtype, channels_last

    def new_epoch(self, epoch: int) -> None:
        self.scheduler.step(epoch)
        net = getattr(self.model, "module", self.model)  # the network inside a DDP wrapper
        net.drop_path_prob = self.drop_path_prob * epoch / self.epochs
        self.model.train()

    def step(self, batch: tuple[torch.Tensor, torch.Tensor]) -> dict[str, torch.Tensor]:
        x, y = batch
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        self.optimizer.zero_grad(set_to_none=True)
        with torch.autocast(x.device.type, dtype=self.autocast_dtype or torch.float32,
                            enabled=self.autocast_dtype is not None):
            out = self.model(x)
            logits, aux = out if isinstance(out, tuple) else (out, None)
            loss = F.cross_entropy(logits, y, label_smoothing=self.label_smoothing)
            total = loss if aux is None else loss + self.aux_weight * F.cross_entropy(
                aux, y, label_smoothing=self.label_smoothing)
        total.backward()
        nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
        self.optimizer.step()
        return {"loss": loss.detach() * len(y), "correct": (logits.argmax(1) == y).sum(),
                "n": torch.tensor(len(y), device=y.device)}

    def state_dict(self) -> dict:
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
