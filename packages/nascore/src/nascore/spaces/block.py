"""The block-unit space of seed 000 (Fujitsu, US 2020/0082275 A1, Fig. 2-4):

    Conv0 -> N x [block unit -> feature integration layer] -> embedding -> classifier

A block unit has M layers; for each layer the controller samples an op (para. 0056: the
patent's 8; para. 0057's extended set optional) and which earlier layers feed it (Fig. 3a:
"the input of Conv 5x5 is a combination of 1 and 2"; several inputs are summed). Tokens per
layer: the op, then one yes/no per candidate input (the block's earlier layers, then the
block input). `no_skip` ("identity residual no skip", para. 0065) adds nothing: its input
tokens are forced "no" and later layers may not read it; a layer must read at least one
input (the block input is forced "yes" when nothing else was chosen). The block's output is
the sum of its loose ends (layers no later layer reads). The feature integration layers
are fixed convolutions (para. 0053-0054). Blocks share one sampled structure by default
(para. 0068) or are sampled independently.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Sequence

import torch
from torch import nn

from nascore.controllers.grammar import TokenGrammar
from nascore.registry import Registry

YES, NO = "yes", "no"
NO_SKIP = "no_skip"
BLOCK_OPS: Registry = Registry("block op")


class _ReLUConvBN(nn.Sequential):
    def __init__(self, C: int, k: int, separable: bool) -> None:
        convs = ([nn.Conv2d(C, C, k, padding=k // 2, groups=C, bias=False), nn.Conv2d(C, C, 1, bias=False)]
                 if separable else [nn.Conv2d(C, C, k, padding=k // 2, bias=False)])
        super().__init__(nn.ReLU(inplace=False), *convs, nn.BatchNorm2d(C))


for _k in (1, 3, 5, 7):
    BLOCK_OPS.register(f"conv{_k}x{_k}")(lambda C, k=_k: _ReLUConvBN(C, k, False))
    BLOCK_OPS.register(f"sep_conv{_k}x{_k}")(lambda C, k=_k: _ReLUConvBN(C, k, True))
for _k in (1, 3, 5):
    BLOCK_OPS.register(f"max_pool{_k}x{_k}")(lambda C, k=_k: nn.MaxPool2d(k, 1, k // 2))
    BLOCK_OPS.register(f"avg_pool{_k}x{_k}")(
        lambda C, k=_k: nn.AvgPool2d(k, 1, k // 2, count_include_pad=False))
BLOCK_OPS.register("skip")(lambda C: nn.Identity())  # identity residual skip: passes its summed inputs on
BLOCK_OPS.register(NO_SKIP)(lambda C: None)


class BlockGrammar(TokenGrammar):
    """Tokens: per block (one if shared), per layer i: op, then i + 1 yes/no input choices
    (earlier layers 0..i-1, then the block input)."""

    def __init__(self, ops: Sequence[str], layers: int, blocks: int, shared: bool) -> None:
        for op in ops:
            if op not in BLOCK_OPS:
                raise ValueError(f"unknown block op {op!r}; known: {', '.join(BLOCK_OPS.names())}")
        self.ops, self.layers, self.blocks, self.shared = tuple(ops), layers, blocks, shared
        self.vocab = (*self.ops, YES, NO)
        self._yes, self._no = [self.vocab.index(YES)], [self.vocab.index(NO)]
        self._yes_no = self._yes + self._no
        self._op_ids = list(range(len(self.ops)))
        self._no_skip = self.ops.index(NO_SKIP) if NO_SKIP in self.ops else -1
        # per position: (block, layer, candidate or -1 for the op token, position of the layer's op)
        self.table: list[tuple[int, int, int, int]] = []
        self._op_at: dict[tuple[int, int], int] = {}  # (block, layer) -> position of its op token
        for b in range(1 if shared else blocks):
            for i in range(layers):
                op_pos = self._op_at[b, i] = len(self.table)
                self.table.append((b, i, -1, op_pos))
                self.table += [(b, i, c, op_pos) for c in range(i + 1)]

    @property
    def length(self) -> int:
        return len(self.table)

    def legal(self, prefix):
        t = len(prefix)
        b, i, cand, op_pos = self.table[t]
        if cand < 0:
            return self._op_ids
        if prefix[op_pos] == self._no_skip:
            return self._no
        if cand < i:  # an earlier layer of this block: not readable if it is no_skip
            return self._no if prefix[self._op_at[b, cand]] == self._no_skip else self._yes_no
        chosen = any(prefix[p] == self._yes[0] for p in range(op_pos + 1, t))
        return self._yes_no if chosen else self._yes  # the block input, last: at least one input

    def architecture(self, ids: Sequence[int]) -> "BlockArchitecture":
        """The structure (op, inputs) per layer per block; inputs index layers, i = block input."""
        self.check(ids)
        names = self.decode(ids)
        blocks = []
        for b in range(1 if self.shared else self.blocks):
            layers = []
            for i in range(self.layers):
                op_pos = self._op_at[b, i]
                inputs = tuple(c for c in range(i + 1) if names[op_pos + 1 + c] == YES)
                layers.append((names[op_pos], inputs))
            blocks.append(tuple(layers))
        return BlockArchitecture(tuple(blocks) * (self.blocks if self.shared else 1))


@dataclass(frozen=True)
class BlockArchitecture:
    """Per block, per layer: (op, inputs); input index == layer index means the block input."""

    blocks: tuple[tuple[tuple[str, tuple[int, ...]], ...], ...]

    def to_json(self) -> dict[str, Any]:
        return {"schema": "nascore.blocks/1",
                "blocks": [[[op, list(inputs)] for op, inputs in block] for block in self.blocks]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "BlockArchitecture":
        return cls(tuple(tuple((str(op), tuple(int(i) for i in inputs)) for op, inputs in block)
                         for block in data["blocks"]))

    def canonical_hash(self) -> str:
        return hashlib.sha256(json.dumps(self.to_json(), sort_keys=True).encode()).hexdigest()[:12]

    def describe(self) -> str:
        out = []
        for b, block in enumerate(self.blocks):
            if b and block == self.blocks[b - 1]:
                continue
            layers = []
            for i, (op, inputs) in enumerate(block):
                if op == NO_SKIP:
                    continue
                src = ",".join("in" if j == i else str(j + 1) for j in inputs)
                layers.append(f"{i + 1}:{op}({src})")
            out.append(f"block {b + 1}: " + " ".join(layers))
        return "; ".join(out) + (" (all blocks)" if len(set(self.blocks)) == 1 and len(self.blocks) > 1 else "")


class BlockUnit(nn.Module):
    def __init__(self, layers: Sequence[tuple[str, Sequence[int]]], C: int) -> None:
        super().__init__()
        self.spec = [(op, tuple(inputs)) for op, inputs in layers]
        self.ops = nn.ModuleList([BLOCK_OPS[op](C) or nn.Identity() for op, _ in self.spec])
        used = {j for i, (op, inputs) in enumerate(self.spec) if op != NO_SKIP for j in inputs if j != i}
        self.loose = [i for i, (op, _) in enumerate(self.spec) if op != NO_SKIP and i not in used]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs: list[torch.Tensor | None] = []
        for i, ((op, inputs), module) in enumerate(zip(self.spec, self.ops)):
            if op == NO_SKIP:
                outs.append(None)
                continue
            h = sum(x if j == i else outs[j] for j in inputs)
            outs.append(module(h))
        return sum(outs[i] for i in self.loose) if self.loose else x


class BlockNet(nn.Module):
    """Conv0 -> N x [block unit -> feature integration conv] -> GAP -> embedding -> classifier."""

    def __init__(self, arch: BlockArchitecture, num_classes: int, *, C: int, embedding: int,
                 integration_kernel: int, integration_stride: int, widen: int, in_channels: int = 3) -> None:
        super().__init__()
        self.conv0 = nn.Sequential(nn.Conv2d(in_channels, C, 3, padding=1, bias=False), nn.BatchNorm2d(C),
                                   nn.ReLU(inplace=True))
        stages = []
        for block in arch.blocks:
            C_out = C * widen
            stages += [BlockUnit(block, C),
                       nn.Sequential(nn.Conv2d(C, C_out, integration_kernel, integration_stride,
                                               integration_kernel // 2, bias=False),
                                     nn.BatchNorm2d(C_out), nn.ReLU(inplace=True))]
            C = C_out
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.embedding = nn.Linear(C, embedding)
        self.classifier = nn.Linear(embedding, num_classes)
        self.embedding_dim = embedding

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.embedding(self.pool(self.stages(self.conv0(x))).flatten(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.forward_features(x))
