"""Stage-2 supernet of two-stage grouped search (StacNAS, seed 004): every edge holds the ops of
the group activated there in stage 1 (DartsSupernet's `edge_ops`). What is new: how edges are
ranked when the cell has no zero op. With `none` on every edge (the authors' code), an edge's
strength is its best non-zero weight, as in DARTS. Without it, a singleton group (skip_connect)
would always weigh 1, so the strength becomes P(group, stage 1) x P(op | group, stage 2)."""
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
        probs = self.alpha_probs()
        if "none" in self.space.primitives:
            return probs
        return {k: p * getattr(self, f"prior_{k}", torch.ones(len(p), device=p.device))[:, None]
                for k, p in probs.items()}
