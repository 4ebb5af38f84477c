"""Stage-2 supernet of two-stage grouped search (StacNAS, seed 004): every edge holds the ops of
the group activated there in stage 1 (DartsSupernet's `edge_ops`). What is new: how edges are
ranked, since edges now hold different numbers of candidates.

A softmax over k candidates starts at 1/k, so raw weights favour edges with few candidates: a
{skip, none} edge starts at 0.5, a {sep3, sep5, none} edge at 0.33, and DARTS' "keep the two
strongest edges" would keep skip edges for their size alone. Edge strength is therefore the
best non-zero weight relative to uniform (x the number of candidates on the edge), which the
authors' code gets by padding the skip group to two entries (genotypes.py OPS_DICT). Without a
zero op a singleton group weighs 1 whatever it learned, so the stage-1 weight of the edge's
group multiplies in as well: P(group | stage 1) x k P(op | group, stage 2)."""
from __future__ import annotations

from typing import Mapping, Sequence

import torch

from nascore.supernets.darts import SUPERNETS, DartsSupernet


@SUPERNETS.register("grouped")
class GroupedSupernet(DartsSupernet):
    def __init__(self, *args, group_prior: Mapping[str, Sequence[float]] | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        for key, prior in (group_prior or {}).items():
            if len(prior) != self.space.num_edges:
                raise ValueError(f"group_prior[{key!r}]: {len(prior)} values, the cell has {self.space.num_edges} edges")
            self.register_buffer(f"prior_{key}", torch.tensor(list(prior), dtype=torch.float32))

    def derivation_weights(self) -> dict[str, torch.Tensor]:
        out = {}
        for k, p in self.alpha_probs().items():
            held = (p > 0).sum(1, keepdim=True).to(p.dtype)  # candidates on each edge
            w = p * held
            if "none" not in self.space.primitives:
                w = w * getattr(self, f"prior_{k}", torch.ones(len(p), device=p.device))[:, None]
            out[k] = w
        return out
