"""Multi-level DARTS with heuristic entropy (seed 002, HIT 2021).

What is new against DARTS, and all that this module adds: the supernet's normal cells in
the low / mid / high levels and the two reduction cells each have their own alpha
(MultiLevelSupernet), and the architecture objective is L_val + gamma * L_entropy (eq. 7).
Search, derivation (one cell per alpha group), evaluation networks (built level by level
through Genotype.cell_for), tracking and reports are DARTS'.
"""
from __future__ import annotations

from dataclasses import dataclass

from nascore.config import ParamsError, spec
from nascore.methods.base import METHODS
from nascore.methods.darts import DartsMethod, DartsParams, SearchParams
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
class MldartsParams(DartsParams):
    search: MldartsSearchParams


@METHODS.register("mldarts")
class MldartsMethod(DartsMethod):
    name = "mldarts"
    params_cls = MldartsParams
    supernet = "multilevel"

    def arch_regulariser(self):
        return entropy_regulariser(self.p.search.gamma) if self.p.search.gamma > 0 else None

    def run_tags(self) -> dict[str, str]:
        return {"gamma": f"{self.p.search.gamma:g}"}

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
            key = (r.data.tags.get("gamma", "?"), r.data.tags.get("profile", "?"))
            ours.setdefault(key, []).append(r.data.metrics["test_top1_err"])  # the schema's headline name
        gammas = sorted({*study.get("test_err", {}), *(g for g, _ in ours)}, key=lambda g: float(g) if g != "?" else 1e9)
        lines = ["## Entropy weight study (paper Tab. 1)", "",
                 f"Paper: mean test error of {study.get('runs_per_gamma', '?')} full search + evaluation runs per "
                 "gamma. Ours: every CIFAR-10 evaluate run in the MLflow store, grouped by gamma and profile "
                 "(run the sweep with the commands in README.md).", "",
                 "| gamma | paper error (%) | ours: profile | ours: runs | ours: mean error (%) | ours: std |",
                 "|---|---|---|---|---|---|"]
        for g in gammas:
            paper_err = study.get("test_err", {}).get(g)
            mine = sorted((p, v) for (gg, p), v in ours.items() if gg == g)
            if not mine:
                lines.append(f"| {g} | {_fmt_err(paper_err)} | - | 0 | - | - |")
            for profile, vals in mine:
                mean = sum(vals) / len(vals)
                std = (f"{(sum((v - mean) ** 2 for v in vals) / (len(vals) - 1)) ** 0.5:.2f}"
                       if len(vals) > 1 else "-")
                lines.append(f"| {g} | {_fmt_err(paper_err)} | {profile} | {len(vals)} | {mean:.2f} | {std} |")
        return lines + [""]


def _fmt_err(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}"
