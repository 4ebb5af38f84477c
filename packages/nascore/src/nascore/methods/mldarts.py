"""Multi-level DARTS with heuristic entropy (seed 002, HIT 2021).

What is new against DARTS, and all that this module adds: the supernet's normal cells in
the low / mid / high levels and the two reduction cells each have their own alpha
(MultiLevelSupernet), the architecture objective is L_val + gamma * L_entropy (eq. 7), and
ImageNet training may follow P-DARTS' linear schedule (sec. 2.4.2: "the same strategy as
[15]"). Search, derivation (one cell per alpha group), evaluation networks (built level by
level through Genotype.cell_for), tracking and reports are DARTS'.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from nascore.config import ParamsError, spec
from nascore.methods.base import METHODS
from nascore.methods.darts import DartsMethod, DartsParams, FinetuneParams, SearchParams, TrainParams
from nascore.methods.variance import spread
from nascore.strategies.regularisers import entropy_regulariser


@dataclass(frozen=True)
class MldartsSearchParams(SearchParams):
    gamma: float = spec(ge=0.0, doc="weight of the architecture entropy (paper: 1)")

    def validate(self, path: str) -> None:
        super().validate(path)
        if self.supernet.layers < 5:
            raise ParamsError(f"{path}.supernet.layers: got {self.supernet.layers}; the multi-level supernet "
                              "needs a normal cell in each of its 3 levels, allowed: >= 5")
        if self.order != 1:
            raise ParamsError(f"{path}.order: got {self.order}; mldarts uses first-order updates (seed 002, "
                              "sec. 1.2), allowed: 1")


@dataclass(frozen=True)
class MldartsTrainParams(TrainParams):
    schedule: Literal["cosine", "step", "linear"] = spec(
        doc="cosine (to lr_min), step (decay_rate per epoch) or linear: P-DARTS' ImageNet schedule "
            "(pdarts_linear_lr: warmup_epochs, tail_epochs)")
    warmup_epochs: int = spec(0, ge=0, doc="linear only: the first epochs' lr scaled by (epoch + 1) / warmup_epochs")
    tail_epochs: int = spec(0, ge=0, doc="linear only: the last epochs, decayed tail_epochs times more gently")

    def validate(self, path: str) -> None:
        if self.schedule == "linear" and self.warmup_epochs + self.tail_epochs >= self.epochs:
            raise ParamsError(f"{path}: warmup_epochs + tail_epochs = {self.warmup_epochs + self.tail_epochs} "
                              f"with epochs = {self.epochs}; the linear schedule needs them below epochs "
                              "(or schedule: step / cosine)")


@dataclass(frozen=True)
class MldartsFinetuneParams(FinetuneParams):
    imagenet: MldartsTrainParams = spec()


@dataclass(frozen=True)
class MldartsParams(DartsParams):
    search: MldartsSearchParams
    finetune: MldartsFinetuneParams


def pdarts_linear_lr(epoch: int, *, epochs: int, lr: float, warmup_epochs: int, tail_epochs: int) -> float:
    """The lr of 0-based `epoch` under P-DARTS' ImageNet schedule (train_imagenet.py, adjust_lr and its
    warm-up): linear decay from `lr` that would reach 0 at epochs - tail_epochs; over the last tail_epochs
    epochs a slope tail_epochs times gentler, reaching 0 at `epochs`; over the first warmup_epochs epochs
    that lr times (epoch + 1) / warmup_epochs. Epochs epochs - tail_epochs - 1 and epochs - tail_epochs
    share one lr, as in the released code."""
    head = epochs - tail_epochs
    if epochs - epoch > tail_epochs:
        value = lr * (head - epoch) / head
    else:
        value = lr * (epochs - epoch) / (head * tail_epochs)
    if epoch < warmup_epochs:
        value *= (epoch + 1) / warmup_epochs
    return value


class PdartsLinearLR:
    """pdarts_linear_lr as a per-epoch scheduler (what SupervisedTask steps: step(epoch), state_dict,
    load_state_dict). timm has no such schedule, and its Scheduler base would import timm with the
    method registry; the lr is a function of the epoch alone, so nothing needs saving but the base."""

    def __init__(self, optimizer: torch.optim.Optimizer, tp: MldartsTrainParams) -> None:
        self.optimizer, self.tp = optimizer, tp
        self.base_lrs = [g["lr"] for g in optimizer.param_groups]

    def step(self, epoch: int) -> None:
        for g, base in zip(self.optimizer.param_groups, self.base_lrs):
            g["lr"] = pdarts_linear_lr(epoch, epochs=self.tp.epochs, lr=base, warmup_epochs=self.tp.warmup_epochs,
                                       tail_epochs=self.tp.tail_epochs)

    def state_dict(self) -> dict:
        return {"base_lrs": list(self.base_lrs)}

    def load_state_dict(self, state: dict) -> None:
        self.base_lrs = list(state["base_lrs"])


@METHODS.register("mldarts")
class MldartsMethod(DartsMethod):
    name = "mldarts"
    params_cls = MldartsParams
    supernet = "multilevel"

    def arch_regulariser(self):
        return entropy_regulariser(self.p.search.gamma) if self.p.search.gamma > 0 else None

    def run_tags(self) -> dict[str, str]:
        return {"gamma": f"{self.p.search.gamma:g}"}

    def lr_scheduler(self, optimizer: torch.optim.Optimizer, tp: TrainParams):
        """Fine-tuning's per-epoch lr schedule: P-DARTS' linear one where tp asks for it, else DARTS'."""
        if tp.schedule == "linear":
            return PdartsLinearLR(optimizer, tp)
        return super().lr_scheduler(optimizer, tp)

    def extra_report_sections(self) -> list[str]:
        """Tab. 1: mean CIFAR-10 test error per gamma, ours from every evaluate run in MLflow."""
        import mlflow

        study = self.p.paper.get("gamma_study", {})
        exp = mlflow.get_experiment_by_name(self.name)
        runs = [] if exp is None else mlflow.search_runs(
            [exp.experiment_id], filter_string="tags.stage = 'evaluate' and tags.dataset LIKE 'CIFAR-10%'",
            output_format="list")
        ours: dict[tuple[str, str], list[float]] = {}
        for r in runs:
            if "variance" in r.data.tags:  # the variance stage's runs: seeds, not a gamma study (the summary)
                continue
            key = (r.data.tags.get("gamma", "?"), r.data.tags.get("profile", "?"))
            ours.setdefault(key, []).append(r.data.metrics["test_top1_err"])  # the schema's headline name
        gammas = sorted({*study.get("test_err", {}), *(g for g, _ in ours)}, key=lambda g: float(g) if g != "?" else 1e9)
        lines = ["## Entropy weight study (paper Tab. 1)", "",
                 f"Paper: mean test error of {study.get('runs_per_gamma', '?')} full search + evaluation runs per "
                 "gamma. Ours: every CIFAR-10 evaluate run in the MLflow store but the variance stage's (seeds at "
                 "gamma 1, in reports/summary.md), grouped by gamma and profile (run the sweep with the commands in "
                 "README.md).", "",
                 "| gamma | paper error (%) | ours: profile | ours: runs | ours: mean error (%) | ours: std |",
                 "|---|---|---|---|---|---|"]
        for g in gammas:
            paper_err = study.get("test_err", {}).get(g)
            mine = sorted((p, v) for (gg, p), v in ours.items() if gg == g)
            if not mine:
                lines.append(f"| {g} | {_fmt_err(paper_err)} | - | 0 | - | - |")
            for profile, vals in mine:
                st = spread(vals, 2)
                std = f"{st['std']:.2f}" if st["n"] > 1 else "-"
                lines.append(f"| {g} | {_fmt_err(paper_err)} | {profile} | {st['n']} | {st['mean']:.2f} | {std} |")
        return lines + [""]


def _fmt_err(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}"
