"""ENAS (Pham et al. 2018, micro search): an LSTM controller samples cells, the sampled child is
trained on the path supernet's shared weights, and the controller is trained with REINFORCE on
the shared-weight child's accuracy on a validation batch (sec. 2.2, 2.3).

The two phases alternate inside every search step here (the authors' code alternates them per
epoch: an epoch of shared-weight steps, then 30 controller steps of 10 children each): each step
trains the weights on a training batch with one sampled child, and every `controller_every` steps
the controller takes one REINFORCE step over `children` sampled children, each rewarded with its
accuracy on the step's validation batch. The result is the best of `candidates` controller samples
ranked by the shared weights (sec. 2.2: "sample several models ... take the one with the highest
reward"), as for random search (nascore.strategies.weight_sharing)."""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from nascore.controllers import LSTMPolicy, Reinforce
from nascore.genotype import Genotype
from nascore.spaces.cell_grammar import CellGrammar
from nascore.strategies.darts import STRATEGIES
from nascore.strategies.weight_sharing import PathMonitor, WeightSharingSearch, path_accuracy
from nascore.train import Hook


class ControllerSampler:
    """Architectures drawn from an LSTM policy over a cell grammar."""

    def __init__(self, policy: LSTMPolicy, grammar: CellGrammar) -> None:
        self.policy, self.grammar = policy, grammar

    @torch.no_grad()
    def sample_tokens(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        return self.policy.sample(n, generator).tokens

    def sample(self, n: int, generator: torch.Generator | None = None) -> list[Genotype]:
        return [self.grammar.to_genotype(t) for t in self.sample_tokens(n, generator).tolist()]


class _OneBatch:
    """A single (x, y) batch where path_accuracy expects batches."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y = x, y

    def epoch(self, epoch: int):
        yield self.x, self.y


@STRATEGIES.register("enas")
class ENASSearch(WeightSharingSearch):
    """Weight-sharing search whose sampler learns: REINFORCE on shared-weight validation accuracy."""

    def __init__(self, model: nn.Module, sampler: ControllerSampler, update: Reinforce, *,
                 controller_every: int, children: int, **kwargs) -> None:
        super().__init__(model, sampler, **kwargs)
        self.update, self.controller_every, self.children = update, controller_every, children
        self.steps = 0
        self.last_controller: dict[str, float] = {}

    @classmethod
    def from_config(cls, model: nn.Module, p, run, device: torch.device, *, epochs: int, val_batches=None,
                    arch_regulariser=None, one_level: bool = False) -> "ENASSearch":
        """From a method's search params `p` (nascore.methods.enas.SearchParams)."""
        if arch_regulariser is not None or one_level:
            raise ValueError("ENAS trains its controller on validation batches: no regulariser, not one-level")
        c, r = p.controller, p.ranking
        grammar = CellGrammar(model.space, list(model.alphas.keys()))
        policy = LSTMPolicy(grammar, hidden=c.hidden, layers=c.layers, temperature=c.temperature,
                            tanh_constant=c.tanh_constant)
        update = Reinforce(policy, lr=c.lr, baseline_decay=c.baseline_decay, entropy_weight=c.entropy_weight,
                           grad_clip=c.grad_clip)
        return cls(model, ControllerSampler(policy, grammar), update, controller_every=c.every,
                   children=c.children, lr=p.lr, lr_min=p.lr_min, momentum=p.momentum,
                   weight_decay=p.weight_decay, grad_clip=p.grad_clip, epochs=epochs, val_batches=val_batches,
                   candidates=r.candidates, rank_batches=r.rank_batches, finalists=r.finalists, probes=r.probes,
                   seed=run.seed)

    def step(self, batch) -> dict[str, torch.Tensor]:
        (x, y), (x_val, y_val) = batch
        metrics = super().step((x, y))
        self.steps += 1
        if self.steps % self.controller_every == 0:
            self.last_controller = self.controller_step(x_val, y_val)
        return metrics

    def controller_step(self, x_val: torch.Tensor, y_val: torch.Tensor) -> dict[str, float]:
        """One REINFORCE update: `children` samples, each rewarded with its shared-weight accuracy."""
        tokens = self.sampler.sample_tokens(self.children)
        val = _OneBatch(x_val, y_val)
        rewards = torch.tensor([path_accuracy(self.model, self.sampler.grammar.to_genotype(t), val)
                                for t in tokens.tolist()])
        stats = self.update.update(tokens, rewards, None)
        self.model.train()
        return {"reward": float(rewards.mean()), **stats}

    def monitor(self, val_batches) -> Hook:
        return ControllerMonitor(self)

    def describe(self) -> dict:
        return {"optimisation": "weight sharing; an LSTM controller trained by REINFORCE on the shared-weight "
                                "validation accuracy"}

    def outputs(self) -> tuple[dict[str, Any], dict[str, Any]]:
        files, metrics = super().outputs()
        with torch.no_grad():
            greedy = self.sampler.grammar.to_genotype(self.sampler.policy.greedy())
        metrics.update({"controller_reward": round(self.last_controller.get("reward", float("nan")), 4),
                        "controller_baseline": round(float(self.update.baseline or 0.0), 4),
                        "controller_greedy_hash": greedy.canonical_hash()})
        return files, metrics

    def state_dict(self) -> dict:
        return {**super().state_dict(), "policy": self.sampler.policy.state_dict(),
                "update": self.update.state_dict(), "steps": self.steps, "last_controller": self.last_controller}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.sampler.policy.load_state_dict(state["policy"])
        self.update.load_state_dict(state["update"])
        self.steps, self.last_controller = state["steps"], state["last_controller"]


class ControllerMonitor(PathMonitor):
    """PathMonitor's record plus the controller's last update (mean reward, baseline, entropy)."""

    def after_epoch(self, trainer, metrics: dict[str, Any]) -> None:
        super().after_epoch(trainer, metrics)
        for k, v in self.strategy.last_controller.items():
            metrics[f"controller_{k}"] = v
