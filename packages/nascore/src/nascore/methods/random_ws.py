"""Random search with weight sharing (Li & Talwalkar 2019; a baseline of seed 003): the DARTS cell
space, a supernet trained with one uniformly sampled architecture per step, then sampled
architectures ranked by the shared weights on held-out images; the best one is trained from
scratch and evaluated like every DARTS-family result.

Every number comes from params/random_ws.yaml."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from nascore.config import ParamsError, spec
from nascore.methods.base import METHODS
from nascore.methods.darts import DartsMethod, EvaluateParams, FinetuneParams, SupernetParams
from nascore.strategies import STRATEGIES


@dataclass(frozen=True)
class RankingParams:
    candidates: int = spec(ge=1, doc="architectures sampled and scored with the shared weights")
    rank_batches: int = spec(ge=1, doc="validation batches each candidate is scored on (first round)")
    finalists: int = spec(ge=1, doc="the best candidates re-scored on the whole validation split")
    probes: int = spec(ge=1, doc="fixed architectures whose shared-weight error is plotted per epoch")


@dataclass(frozen=True)
class SearchParams:
    dataset: Literal["cifar10", "cifar100"]
    strategy: str = spec(doc="random_ws: uniform paths, ranked by the shared weights")
    supernet: SupernetParams = spec()
    epochs: int = spec(ge=1)
    batch_size: int = spec(ge=1)
    train_portion: float = spec(gt=0.0, lt=1.0, doc="share of the training set for weights; the rest ranks")
    lr: float = spec(gt=0.0)
    lr_min: float = spec(ge=0.0)
    momentum: float = spec(ge=0.0, lt=1.0)
    weight_decay: float = spec(ge=0.0)
    grad_clip: float = spec(gt=0.0)
    augment: Literal["darts", "seed001", "none"] = spec()
    checkpoint_every_steps: int = spec(ge=0, doc="0: only at epoch ends")
    ranking: RankingParams = spec()

    def validate(self, path: str) -> None:
        if self.strategy not in STRATEGIES:
            raise ParamsError(f"{path}.strategy: got {self.strategy!r}; allowed: {', '.join(STRATEGIES.names())}")
        if self.supernet.mixed_op != "reference":
            raise ParamsError(f"{path}.supernet.mixed_op: got {self.supernet.mixed_op!r}; a sampled path runs "
                              f"single ops: use reference")
        if self.ranking.finalists > self.ranking.candidates:
            raise ParamsError(f"{path}.ranking.finalists: got {self.ranking.finalists}; at most "
                              f"ranking.candidates ({self.ranking.candidates})")


@dataclass(frozen=True)
class RandomWSParams:
    search: SearchParams
    finetune: FinetuneParams
    evaluate: EvaluateParams
    paper: dict[str, Any] = spec(default_factory=dict, doc="published numbers, for the report")


@METHODS.register("random_ws")
class RandomWSMethod(DartsMethod):
    name = "random_ws"
    params_cls = RandomWSParams
    supernet = "paths"  # one architecture per forward pass, every one on the shared weights

    def one_level(self) -> bool:
        """The weights train on S_train only; S_val is kept for ranking the sampled architectures."""
        return True

    def extra_report_sections(self) -> list[str]:
        ranking = self.layout.search_dir(self.name) / "ranking.json"
        if not ranking.is_file():
            return []
        r = self.status_of(ranking)
        rows = r["architectures"]
        lines = ["## Ranking by the shared weights", "",
                 f"{len(rows)} distinct architectures of {r['candidates']} sampled, each scored on "
                 f"{r['rank_batches']} validation batch(es); the best {r['finalists']} re-scored on the whole "
                 f"validation split (runs/{self.name}/search/ranking.json). The first is trained from scratch.", "",
                 "| rank | genotype | screening accuracy | validation accuracy |", "|---|---|---|---|"]
        for row in rows[:r["finalists"]]:
            lines.append(f"| {row['rank']} | `{row['genotype_hash']}` | {row['screen_acc']:.3f} | "
                         f"{row['val_acc']:.3f} |")
        return lines + [""]
