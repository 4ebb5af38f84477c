"""An autoregressive LSTM policy over a token grammar (Zoph & Le 2017; seed 001 sec. 1.5).

At each position the LSTM reads the previous token and the slot kind, emits logits over the
vocabulary, and illegal tokens are masked to -inf. A sequence's log-probability is the sum of
its tokens' log-probabilities; sampling, scoring and greedy decoding share one loop.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from nascore.controllers.grammar import TokenGrammar


@dataclass
class Rollout:
    """Token ids [n, T]; per-token log-probabilities and entropies [n, T]."""

    tokens: torch.Tensor
    token_log_probs: torch.Tensor
    token_entropies: torch.Tensor

    @property
    def log_prob(self) -> torch.Tensor:
        return self.token_log_probs.sum(1)

    @property
    def entropy(self) -> torch.Tensor:
        return self.token_entropies.sum(1)


class LSTMPolicy(nn.Module):
    """pi(a_1:T) = prod_t pi(a_t | a_<t) with an LSTM and grammar masks."""

    def __init__(self, grammar: TokenGrammar, hidden: int = 64, layers: int = 1,
                 temperature: float = 1.0, tanh_constant: float | None = None) -> None:
        super().__init__()
        self.grammar, self.hidden = grammar, hidden
        self.temperature, self.tanh_constant = temperature, tanh_constant
        V = len(grammar.vocab)
        self.token_embed = nn.Embedding(V + 1, hidden)  # +1: the start token
        self.slot_embed = nn.Embedding(grammar.num_slots, hidden)
        self.lstm = nn.LSTM(hidden, hidden, layers, batch_first=True)
        self.head = nn.Linear(hidden, V)
        self.start = V

    def _logits(self, out: torch.Tensor) -> torch.Tensor:
        logits = self.head(out) / self.temperature
        if self.tanh_constant is not None:  # ENAS: keeps early logits from saturating
            logits = self.tanh_constant * torch.tanh(logits)
        return logits

    def _step_inputs(self, prev: torch.Tensor, t: int) -> torch.Tensor:
        slot = torch.full_like(prev, self.grammar.slot(t))
        return (self.token_embed(prev) + self.slot_embed(slot)).unsqueeze(1)

    def _run(self, n: int, forced: torch.Tensor | None, generator: torch.Generator | None,
             greedy: bool = False) -> Rollout:
        device = self.head.weight.device
        T = self.grammar.length
        tokens = torch.empty(n, T, dtype=torch.long, device=device)
        logps = torch.empty(n, T, device=device)
        ents = torch.empty(n, T, device=device)
        prev = torch.full((n,), self.start, dtype=torch.long, device=device)
        state = None
        for t in range(T):
            out, state = self.lstm(self._step_inputs(prev, t), state)
            logits = self._logits(out[:, 0])
            mask = self.grammar.mask(tokens[:, :t].cpu()).to(device)
            logits = logits.masked_fill(~mask, float("-inf"))
            log_p = F.log_softmax(logits, dim=-1)
            p = log_p.exp()
            if forced is not None:
                tok = forced[:, t].to(device)
            elif greedy:
                tok = log_p.argmax(-1)
            else:
                tok = torch.multinomial(p.detach().cpu(), 1, generator=generator)[:, 0].to(device)
            tokens[:, t] = tok
            logps[:, t] = log_p.gather(1, tok[:, None])[:, 0]
            ents[:, t] = -(p * log_p.masked_fill(~mask, 0.0)).sum(-1)
            prev = tok
        return Rollout(tokens, logps, ents)

    def sample(self, n: int, generator: torch.Generator | None = None) -> Rollout:
        """n sequences drawn from the policy (with log-probs that carry gradients)."""
        return self._run(n, None, generator)

    def score(self, tokens: torch.Tensor) -> Rollout:
        """Log-probabilities of given sequences [n, T] (teacher forcing)."""
        tokens = torch.as_tensor(tokens, dtype=torch.long)
        if tokens.dim() == 1:
            tokens = tokens[None]
        return self._run(len(tokens), tokens, None)

    @torch.no_grad()
    def greedy(self) -> list[int]:
        """The sequence of per-step most likely tokens."""
        return self._run(1, None, None, greedy=True).tokens[0].tolist()
