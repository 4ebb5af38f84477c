"""Controller updates from (sampled architectures, rewards): REINFORCE and PPO.

Both keep a moving-average baseline b <- decay * b + (1 - decay) * mean(R) (Zoph & Le 2017)
and add an entropy bonus; selectable by name from params (`CONTROLLER_UPDATES`).
"""
from __future__ import annotations

import math

import torch
from torch import nn

from nascore.controllers.policy import LSTMPolicy
from nascore.registry import Registry

CONTROLLER_UPDATES: Registry = Registry("controller update")


class PolicyUpdate:
    """Shared state: Adam on the policy, the moving-average baseline, gradient clipping."""

    def __init__(self, policy: LSTMPolicy, *, lr: float, baseline_decay: float, entropy_weight: float,
                 grad_clip: float, **_: float) -> None:
        self.policy = policy
        self.optimizer = torch.optim.Adam(policy.parameters(), lr=lr)
        self.baseline_decay, self.entropy_weight, self.grad_clip = baseline_decay, entropy_weight, grad_clip
        self.baseline: float | None = None

    def advantages(self, rewards: torch.Tensor) -> torch.Tensor:
        """R - b with the baseline from earlier batches (the first batch: its own mean)."""
        mean = float(rewards.mean())
        b = mean if self.baseline is None else self.baseline
        self.baseline = mean if self.baseline is None else (
            self.baseline_decay * self.baseline + (1 - self.baseline_decay) * mean)
        return rewards - b

    def _step(self, loss: torch.Tensor) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(self.policy.parameters(), self.grad_clip)
        self.optimizer.step()

    def update(self, tokens: torch.Tensor, rewards: torch.Tensor, old_log_probs: torch.Tensor) -> dict[str, float]:
        raise NotImplementedError

    def state_dict(self) -> dict:
        return {"optimizer": self.optimizer.state_dict(), "baseline": self.baseline}

    def load_state_dict(self, state: dict) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.baseline = state["baseline"]


@CONTROLLER_UPDATES.register("reinforce")
class Reinforce(PolicyUpdate):
    """grad J = E[sum_t grad log pi(a_t | a_<t) (R - b)] (Williams 1992; seed 001 eq. 3)."""

    def update(self, tokens, rewards, old_log_probs=None):
        adv = self.advantages(rewards)
        roll = self.policy.score(tokens)
        loss = -(adv.to(roll.log_prob) * roll.log_prob).mean() - self.entropy_weight * roll.entropy.mean()
        self._step(loss)
        return {"loss": float(loss.detach()), "baseline": float(self.baseline),
                "entropy": float(roll.entropy.mean().detach())}


@CONTROLLER_UPDATES.register("ppo")
class PPO(PolicyUpdate):
    """Clipped surrogate (Schulman et al. 2017), `epochs` passes over each batch of children."""

    def __init__(self, policy, *, clip: float, epochs: int, **kw) -> None:
        super().__init__(policy, **kw)
        self.clip, self.epochs = clip, epochs

    def update(self, tokens, rewards, old_log_probs):
        adv = self.advantages(rewards)
        old = old_log_probs.detach()
        for _ in range(self.epochs):
            roll = self.policy.score(tokens)
            ratio = torch.exp(roll.log_prob - old.to(roll.log_prob))
            a = adv.to(ratio)
            surrogate = torch.minimum(ratio * a, ratio.clamp(1 - self.clip, 1 + self.clip) * a)
            loss = -surrogate.mean() - self.entropy_weight * roll.entropy.mean()
            self._step(loss)
        return {"loss": float(loss.detach()), "baseline": float(self.baseline),
                "entropy": float(roll.entropy.mean().detach())}


def warm_start(policy: LSTMPolicy, tokens: list[int], *, target_prob: float, lr: float,
               max_steps: int) -> dict[str, float]:
    """Supervised warm start (seed 001: VGG-11 as the starting architecture): maximise
    log pi(tokens) until the string has probability >= target_prob. Above 0.5 it is then the
    policy's single most likely string."""
    opt = torch.optim.Adam(policy.parameters(), lr=lr)
    target = math.log(target_prob)
    seq = torch.tensor([tokens], dtype=torch.long)
    steps = 0
    while True:
        log_prob = policy.score(seq).log_prob.sum()
        logp = float(log_prob.detach())
        if logp >= target or steps == max_steps:
            break
        opt.zero_grad(set_to_none=True)
        (-log_prob).backward()
        opt.step()
        steps += 1
    if logp < target:
        raise RuntimeError(f"warm start reached p={math.exp(logp):.3f} < target {target_prob} in {max_steps} "
                           f"steps; raise controller.warm_start.max_steps or lr")
    return {"steps": steps, "prob": math.exp(logp)}
