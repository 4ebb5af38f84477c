"""ENAS, micro search space (Pham et al. 2018; a baseline of seed 003): an LSTM controller
(nascore.controllers) samples DARTS-space cells, their shared weights train on the sampled children,
the controller learns by REINFORCE from the shared-weight children's validation accuracy; the best
sampled cell is trained from scratch and evaluated like every DARTS-family result.

Every number comes from params/enas.yaml."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from nascore.config import ParamsError, spec
from nascore.methods.base import METHODS
from nascore.methods.darts import EvaluateParams, FinetuneParams
from nascore.methods.random_ws import RandomWSMethod
from nascore.methods.random_ws import SearchParams as RandomSearchParams


@dataclass(frozen=True)
class ControllerParams:
    hidden: int = spec(ge=1, doc="LSTM units")
    layers: int = spec(ge=1)
    temperature: float = spec(gt=0.0)
    tanh_constant: float | None = spec(gt=0.0, doc="logits -> c * tanh(logits); null: plain logits")
    lr: float = spec(gt=0.0, doc="Adam")
    baseline_decay: float = spec(ge=0.0, lt=1.0, doc="moving-average baseline of the reward")
    entropy_weight: float = spec(ge=0.0)
    grad_clip: float = spec(gt=0.0)
    every: int = spec(ge=1, doc="one controller update every this many weight steps")
    children: int = spec(ge=1, doc="sampled children per controller update, each rewarded on the step's val batch")


@dataclass(frozen=True)
class SearchParams(RandomSearchParams):
    """random_ws' search params (strategy: enas; S_val rewards the controller) and the controller's."""

    controller: ControllerParams = spec()

    def validate(self, path: str) -> None:
        super().validate(path)
        if "none" in self.supernet.primitives:
            raise ParamsError(f"{path}.supernet.primitives: a controller never samples none; leave it out")


@dataclass(frozen=True)
class EnasParams:
    search: SearchParams
    finetune: FinetuneParams
    evaluate: EvaluateParams
    paper: dict[str, Any] = spec(default_factory=dict, doc="published numbers, for the report")


@METHODS.register("enas")
class EnasMethod(RandomWSMethod):
    """random_ws with a learned sampler: the same path supernet, ranking and report."""

    name = "enas"
    params_cls = EnasParams

    def one_level(self) -> bool:
        """Bi-level: weights step on S_train batches, the controller is rewarded on S_val batches."""
        return False
