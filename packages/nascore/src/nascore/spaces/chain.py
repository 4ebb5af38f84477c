"""The VGG chain space (seed 001, sec. 1.4): a fixed-length chain of conv / activation /
pool slots following VGG-11, two tokens per slot (action, count).

Conv slots choose an op and a filter count; pool and activation slots choose an op and the
count is forced to "0" (seed 001: "the count of a non-conv layer defaults to 0"); `zero`
skips the layer (and forces count "0"). The grammar makes every other string impossible.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Sequence

import torch
from torch import nn

from nascore.controllers.grammar import GrammarError, TokenGrammar
from nascore.registry import Registry

SLOT_KINDS = ("conv", "act", "pool")
ZERO = "zero"
NO_COUNT = "0"

CHAIN_LAYERS: Registry = Registry("chain layer")


def _bn_conv(c_in: int, c_out: int, k: int) -> nn.Module:
    return nn.Sequential(nn.Conv2d(c_in, c_out, k, padding=k // 2, bias=False), nn.BatchNorm2d(c_out))


def _sep_conv(c_in: int, c_out: int, k: int) -> nn.Module:
    return nn.Sequential(nn.Conv2d(c_in, c_in, k, padding=k // 2, groups=c_in, bias=False),
                         nn.Conv2d(c_in, c_out, 1, bias=False), nn.BatchNorm2d(c_out))


# conv layers: (c_in, c_out) -> module; conv + BN as the CIFAR VGGs are trained
CHAIN_LAYERS.register("conv1x1")(lambda c_in, c_out: _bn_conv(c_in, c_out, 1))
CHAIN_LAYERS.register("conv3x3")(lambda c_in, c_out: _bn_conv(c_in, c_out, 3))
CHAIN_LAYERS.register("sep_conv3x3")(lambda c_in, c_out: _sep_conv(c_in, c_out, 3))
CHAIN_LAYERS.register("sep_conv5x5")(lambda c_in, c_out: _sep_conv(c_in, c_out, 5))
# pools halve the resolution; ceil_mode keeps a 1x1 map 1x1 when an early pool was skipped
CHAIN_LAYERS.register("avg2x2")(lambda c, _: nn.AvgPool2d(2, 2, ceil_mode=True))
CHAIN_LAYERS.register("max2x2")(lambda c, _: nn.MaxPool2d(2, 2, ceil_mode=True))
CHAIN_LAYERS.register("avg3x3")(lambda c, _: nn.AvgPool2d(3, 2, 1, ceil_mode=True, count_include_pad=False))
CHAIN_LAYERS.register("max3x3")(lambda c, _: nn.MaxPool2d(3, 2, 1, ceil_mode=True))
CHAIN_LAYERS.register("max5x5")(lambda c, _: nn.MaxPool2d(5, 2, 2, ceil_mode=True))
CHAIN_LAYERS.register("relu")(lambda c, _: nn.ReLU(inplace=True))
CHAIN_LAYERS.register("sigmoid")(lambda c, _: nn.Sigmoid())


class ChainGrammar(TokenGrammar):
    """Slots of kind conv/act/pool, each emitting (action, count)."""

    def __init__(self, slots: Sequence[str], actions: dict[str, Sequence[str]], counts: Sequence[int]) -> None:
        bad = [s for s in slots if s not in SLOT_KINDS]
        if bad:
            raise GrammarError(f"unknown slot kind {bad[0]!r}; allowed: {', '.join(SLOT_KINDS)}")
        for kind, ops in actions.items():
            for op in ops:
                if op != ZERO and op not in CHAIN_LAYERS:
                    raise GrammarError(f"{kind} action {op!r} is not a chain layer; known: "
                                       f"{', '.join([ZERO, *CHAIN_LAYERS.names()])}")
        self.slots = tuple(slots)
        self.actions = {k: tuple(v) for k, v in actions.items()}
        self.counts = tuple(str(c) for c in counts)
        vocab: list[str] = []
        for k in SLOT_KINDS:
            vocab += [a for a in self.actions.get(k, ()) if a not in vocab]
        self.vocab = tuple(vocab + [c for c in self.counts if c not in vocab] + [NO_COUNT])
        self._action_ids = {k: [self.vocab.index(a) for a in self.actions[k]] for k in set(self.slots)}
        self._count_ids = [self.vocab.index(c) for c in self.counts]
        self._no_count = [self.vocab.index(NO_COUNT)]

    @property
    def length(self) -> int:
        return 2 * len(self.slots)

    def legal(self, prefix):
        t = len(prefix)
        kind = self.slots[t // 2]
        if t % 2 == 0:
            return self._action_ids[kind]
        action = self.vocab[prefix[-1]]
        return self._count_ids if kind == "conv" and action != ZERO else self._no_count

    def layers(self, ids: Sequence[int]) -> list[tuple[str, int]]:
        """(op, count) per slot, `zero` slots included (count 0 outside conv slots)."""
        self.check(ids)
        names = self.decode(ids)
        return [(names[i], int(names[i + 1])) for i in range(0, len(names), 2)]

    def tokens_of(self, layers: Sequence[Sequence[Any]]) -> list[int]:
        """Token ids of a layer list [[op, count], ...] (count may be omitted outside conv)."""
        if len(layers) != len(self.slots):
            raise GrammarError(f"need {len(self.slots)} layers (one per slot), got {len(layers)}")
        names: list[str] = []
        for layer in layers:
            names += [str(layer[0]), str(layer[1]) if len(layer) > 1 else NO_COUNT]
        return self.encode(names)


@dataclass(frozen=True)
class ChainArchitecture:
    """A sampled chain: the kept layers in order ((op, filters or 0), zero slots dropped)."""

    layers: tuple[tuple[str, int], ...]

    @classmethod
    def from_slots(cls, slots: Sequence[tuple[str, int]]) -> "ChainArchitecture":
        return cls(tuple((op, int(c)) for op, c in slots if op != ZERO))

    def to_json(self) -> dict[str, Any]:
        return {"schema": "nascore.chain/1", "layers": [list(layer) for layer in self.layers]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "ChainArchitecture":
        return cls(tuple((str(op), int(c)) for op, c in data["layers"]))

    def canonical_hash(self) -> str:
        return hashlib.sha256(json.dumps(self.to_json(), sort_keys=True).encode()).hexdigest()[:12]

    def describe(self) -> str:
        return " -> ".join(f"{op}({c})" if c else op for op, c in self.layers)


class ChainNet(nn.Module):
    """The child network: the chain, global average pooling, one linear classifier."""

    def __init__(self, arch: ChainArchitecture, num_classes: int, in_channels: int = 3) -> None:
        super().__init__()
        layers, c = [], in_channels
        for op, count in arch.layers:
            c_out = count if count else c
            layers.append(CHAIN_LAYERS[op](c, c_out))
            c = c_out
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c, num_classes)
        self.embedding_dim = c

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.features(x)).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.forward_features(x))
