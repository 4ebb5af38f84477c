"""Center loss (Wen et al., ECCV 2016), the patent's L_c (seed 000, eq. 1: L = L_s + eta L_c).

L_c = 1/2 * mean_i ||x_i - c_{y_i}||^2. The centers are not learned by the optimiser: after
each batch, c_j <- c_j - alpha * sum_{i: y_i = j} (c_j - x_i) / (1 + n_j) (Wen et al., eq. 4).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from nascore.train.tasks import step_metrics


class CenterLoss(nn.Module):
    """Class centers in feature space (a buffer) and the loss pulling features to them."""

    def __init__(self, num_classes: int, dim: int, alpha: float) -> None:
        super().__init__()
        self.alpha = alpha
        self.register_buffer("centers", torch.zeros(num_classes, dim))

    def forward(self, features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return 0.5 * (features - self.centers[labels]).pow(2).sum(1).mean()

    @torch.no_grad()
    def update(self, features: torch.Tensor, labels: torch.Tensor) -> None:
        """Wen et al. eq. 4: move each class center toward its batch features."""
        features = features.detach().float()
        diff = self.centers[labels] - features                      # c_{y_i} - x_i
        delta = torch.zeros_like(self.centers).index_add_(0, labels, diff)
        count = torch.bincount(labels, minlength=len(self.centers)).to(delta)
        self.centers -= self.alpha * delta / (1.0 + count)[:, None]


class CenterLossTask:
    """Softmax cross-entropy + eta * center loss on the embedding (seed 000, eq. 1). The
    centers are tracked even when eta = 0: the reward's Fd and the distance score need them."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler, center: CenterLoss, *,
                 eta: float, grad_clip: float, autocast_dtype: torch.dtype | None = None) -> None:
        self.model, self.optimizer, self.scheduler, self.center = model, optimizer, scheduler, center
        self.eta, self.grad_clip, self.autocast_dtype = eta, grad_clip, autocast_dtype

    def new_epoch(self, epoch: int) -> None:
        self.scheduler.step(epoch)
        self.model.train()

    def step(self, batch: tuple[torch.Tensor, torch.Tensor]) -> dict[str, torch.Tensor]:
        x, y = batch
        self.optimizer.zero_grad(set_to_none=True)
        with torch.autocast(x.device.type, dtype=self.autocast_dtype or torch.float32,
                            enabled=self.autocast_dtype is not None):
            feats = self.model.forward_features(x)
            logits = self.model.classifier(feats)
        feats = feats.float()
        ce = F.cross_entropy(logits.float(), y)
        lc = self.center(feats, y)
        (ce + self.eta * lc).backward()
        nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
        self.optimizer.step()
        self.center.update(feats, y)
        return {**step_metrics(ce, logits, y), "center_loss": lc.detach() * len(y)}

    def state_dict(self) -> dict:
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "center": self.center.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.center.load_state_dict(state["center"])
