"""Training one sampled network (seed 001's chains, seed 000's block nets): the
shared Trainer with a supervised task, optional validation and screening, and a per-network
checkpoint; divergence comes back as a failed record instead of an exception."""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from nascore.evaluate.metrics import topk_errors
from nascore.train.loop import CheckpointHook, Divergence, Hook, Trainer
from nascore.train.tasks import SupervisedTask


class Screened(Exception):
    """A child stopped by screening (seed 001 sec. 2.3)."""


@dataclass(frozen=True)
class Screening:
    epoch: int
    min_val_acc: float


class ValidationHook(Hook):
    """Validation accuracy at the screening epoch and at the end; stops a screened-out child."""

    def __init__(self, model: nn.Module, val, epochs: int, screening: Screening | None) -> None:
        self.model, self.val, self.epochs, self.screening = model, val, epochs, screening

    def after_epoch(self, trainer: Trainer, metrics: dict[str, Any]) -> None:
        ep = int(metrics["epoch"])
        screen = self.screening is not None and ep == self.screening.epoch
        if ep != self.epochs and not screen:
            return
        acc = 1.0 - topk_errors(self.model, self.val, ks=(1,))["top1_err"] / 100.0
        metrics["val_acc"] = acc
        if not math.isfinite(acc):
            raise Divergence(f"validation accuracy is {acc} at epoch {ep}")
        if screen and acc < self.screening.min_val_acc:
            raise Screened(f"validation accuracy {acc:.4f} < {self.screening.min_val_acc} at epoch {ep}")


def lr_scheduler(optimizer: torch.optim.Optimizer, epochs: int, milestones: list[int], gamma: float):
    """Step schedule at `milestones` (epochs) by `gamma`; no milestones: constant lr."""
    from timm.scheduler import MultiStepLRScheduler

    return MultiStepLRScheduler(optimizer, decay_t=list(milestones) or [epochs + 1], decay_rate=gamma,
                                t_in_epochs=True)


def train_network(model: nn.Module, train, *, epochs: int, lr: float, momentum: float, weight_decay: float,
                  grad_clip: float, milestones: list[int], gamma: float, seed: int, ckpt_path: Path,
                  fingerprint: str, checkpoint_every_steps: int, val=None, screening: Screening | None = None,
                  autocast: torch.dtype | None = None, hooks: list[Hook] | None = None,
                  make_task: Callable[..., Any] | None = None, desc: str = "train") -> dict[str, Any]:
    """Train to the end, to screening or to divergence; returns a record (status ok / screened /
    failed with its reason) and leaves no checkpoint behind once the network is decided."""
    device = next(model.parameters()).device
    optimizer = torch.optim.SGD(model.parameters(), lr, momentum=momentum, weight_decay=weight_decay)
    scheduler = lr_scheduler(optimizer, epochs, milestones, gamma)
    task = (make_task(model, optimizer, scheduler) if make_task is not None else
            SupervisedTask(model, optimizer, scheduler, epochs=epochs, aux_weight=0.0, grad_clip=grad_clip,
                           drop_path_prob=0.0, autocast_dtype=autocast))
    ckpt = CheckpointHook(ckpt_path, fingerprint, checkpoint_every_steps, device=device)
    val_hook = [ValidationHook(model, val, epochs, screening)] if val is not None else []
    trainer = Trainer(task, train, epochs, seed=seed, hooks=[*val_hook, *(hooks or []), ckpt], desc=desc)
    record: dict[str, Any] = {"params": sum(p.numel() for p in model.parameters())}
    try:
        trainer.run()
        record["status"] = "ok"
    except Screened as e:
        record.update(status="screened", reason=str(e))
    except Divergence as e:
        record.update(status="failed", reason=str(e))
    finally:
        record["resumed"] = ckpt.resumed_from is not None
    if record["status"] != "ok":
        ckpt.path.unlink(missing_ok=True)
    history = trainer.history  # a screened epoch is in it (with its val_acc); a diverged one is not
    record["history"] = [{k: v for k, v in h.items() if isinstance(v, (int, float))} for h in history]
    record["epochs"] = trainer.epoch
    last_val = [h["val_acc"] for h in history if "val_acc" in h]
    record["val_acc"] = last_val[-1] if last_val else None
    return record
