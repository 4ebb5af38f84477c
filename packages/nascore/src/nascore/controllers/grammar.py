"""Token grammars: what a controller may emit, position by position.

A search space that an RL controller samples from is a fixed-length token language: at
position t the legal tokens depend on the slot and on the tokens already emitted (e.g. a
filter count only after a conv action). The policy masks everything else to -inf, so an
illegal sequence has probability exactly zero.
"""
from __future__ import annotations

from typing import Sequence

import torch


class GrammarError(ValueError):
    """A token sequence the grammar does not allow."""


class TokenGrammar:
    """A fixed-length token language over `vocab`; subclasses say what is legal where."""

    vocab: tuple[str, ...] = ()

    @property
    def length(self) -> int:
        raise NotImplementedError

    def legal(self, prefix: Sequence[int]) -> Sequence[int]:
        """Token ids allowed at position len(prefix) after `prefix`."""
        raise NotImplementedError

    def slot(self, t: int) -> int:
        """What the policy embeds for position t besides the previous token (default: t)."""
        return t

    @property
    def num_slots(self) -> int:
        return self.length

    # -- helpers shared by every grammar -----------------------------------------------------
    def index(self, token: str) -> int:
        try:
            return self.vocab.index(token)
        except ValueError:
            raise GrammarError(f"unknown token {token!r}; vocabulary: {', '.join(self.vocab)}") from None

    def encode(self, tokens: Sequence[str]) -> list[int]:
        """Names -> ids, checked against the grammar."""
        ids = [self.index(t) for t in tokens]
        self.check(ids)
        return ids

    def decode(self, ids: Sequence[int]) -> list[str]:
        return [self.vocab[int(i)] for i in ids]

    def check(self, ids: Sequence[int]) -> None:
        """Raise GrammarError naming the first illegal position."""
        ids = [int(i) for i in ids]
        for t, tok in enumerate(ids[:self.length]):
            allowed = self.legal(ids[:t])
            if tok not in allowed:
                raise GrammarError(f"position {t}: {self.vocab[tok]!r} is not allowed after "
                                   f"{self.decode(ids[:t])[-4:]}; allowed: {self.decode(allowed)}")
        if len(ids) != self.length:
            raise GrammarError(f"need {self.length} tokens, got {len(ids)}")

    def mask(self, prefixes: torch.Tensor) -> torch.Tensor:
        """Bool [n, |vocab|]: legal next tokens for each row of `prefixes` [n, t]. Rows are
        cached per prefix: a policy asks for the same prefixes at every sample and score."""
        cache = self.__dict__.setdefault("_mask_rows", {})
        rows = []
        for row in prefixes.tolist():
            m = cache.get(tuple(row))
            if m is None:
                m = torch.zeros(len(self.vocab), dtype=torch.bool)
                m[list(self.legal(row))] = True
                if len(cache) < 200_000:
                    cache[tuple(row)] = m
            rows.append(m)
        return torch.stack(rows) if rows else torch.zeros(0, len(self.vocab), dtype=torch.bool)
