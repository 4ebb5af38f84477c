"""Training tasks the Trainer runs: supervised training of a derived network."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from nascore.runtime import check_layout
from nascore.train.graphs import GraphedStep, clipped_sgd_step


class SupervisedTask:
    """Cross-entropy (+ auxiliary head) with drop-path ramped linearly over epochs (DARTS train.py).

    `cuda_graphs=True` (an SGD optimizer): the step is a function of the batch, replayed as a CUDA
    graph on a GPU (nascore.train.graphs), with drop-path off and on captured apart; the same
    updates as the default step (on a CPU it runs eagerly)."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler, *,
                 epochs: int, aux_weight: float, grad_clip: float, drop_path_prob: float,
                 label_smoothing: float = 0.0, autocast_dtype: torch.dtype | None = None,
                 channels_last: bool = False, cuda_graphs: bool = False, graphs_strict: bool = True) -> None:
        self.model, self.optimizer, self.scheduler = model, optimizer, scheduler
        self.epochs, self.aux_weight, self.grad_clip = epochs, aux_weight, grad_clip
        self.drop_path_prob, self.label_smoothing = drop_path_prob, label_smoothing
        check_layout(model, autocast_dtype, channels_last)
        self.autocast_dtype, self.channels_last = autocast_dtype, channels_last
        self.graph = None
        if cuda_graphs:
            if not isinstance(optimizer, torch.optim.SGD):
                raise ValueError("cuda_graphs: the captured step updates with SGD; got "
                                 f"{type(optimizer).__name__}")
            self.params = [p for p in model.parameters() if p.requires_grad]
            self._lr = torch.tensor(optimizer.param_groups[0]["lr"], dtype=self.params[0].dtype,
                                    device=self.params[0].device)  # the weights' dtype: fused foreach kernels
            self.graph = GraphedStep(self._update, strict=graphs_strict)

    def new_epoch(self, epoch: int) -> None:
        self.scheduler.step(epoch)
        net = getattr(self.model, "module", self.model)  # the network inside a DDP wrapper
        net.drop_path_prob = self.drop_path_prob * epoch / self.epochs
        if self.graph is not None:
            self._lr.fill_(self.optimizer.param_groups[0]["lr"])
        self.model.train()

    def step(self, batch: tuple[torch.Tensor, torch.Tensor]) -> dict[str, torch.Tensor]:
        x, y = batch
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        if self.graph is not None:  # drop-path off and on take different branches: a graph each
            net = getattr(self.model, "module", self.model)
            return self.graph(x, y, key=getattr(net, "drop_path_prob", 0.0) > 0)
        self.optimizer.zero_grad(set_to_none=True)
        loss, total, logits = self._losses(x, y)
        total.backward()
        nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
        self.optimizer.step()
        return step_metrics(loss, logits, y)

    def _losses(self, x: torch.Tensor, y: torch.Tensor):
        with torch.autocast(x.device.type, dtype=self.autocast_dtype or torch.float32,
                            enabled=self.autocast_dtype is not None, cache_enabled=self.graph is None):
            out = self.model(x)
            logits, aux = out if isinstance(out, tuple) else (out, None)
            loss = F.cross_entropy(logits, y, label_smoothing=self.label_smoothing)
            total = loss if aux is None else loss + self.aux_weight * F.cross_entropy(
                aux, y, label_smoothing=self.label_smoothing)
        return loss, total, logits

    def _update(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        """The step as a function of the batch, with no host sync: what a CUDA graph captures."""
        loss, total, logits = self._losses(x, y)
        grads = torch.autograd.grad(total, self.params, allow_unused=True)
        clipped_sgd_step(self.params, grads, self.optimizer, self._lr, self.grad_clip)
        return step_metrics(loss, logits, y)

    def state_dict(self) -> dict:
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.graph is not None:  # new optimizer state tensors: graphs captured on the old ones are stale
            self._lr.fill_(self.optimizer.param_groups[0]["lr"])
            self.graph.reset()


def step_metrics(loss: torch.Tensor, logits: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
    """A step's metrics as sums on the device (no host sync); the trainer divides by n at the epoch's
    end. Shared by every task and search strategy."""
    return {"loss": loss.detach() * len(y), "correct": (logits.argmax(1) == y).sum(),
            "n": torch.full((), len(y), device=y.device)}  # a fill, not a host-to-device copy (capturable)
