"""Two-stage grouped search, StacNAS (seed 004: Huawei patent CN112561027A; Li et al.,
arXiv 1909.11926).

What is new against DARTS, and all that this module adds:
- operator groups (claim 5), fixed in params or found by clustering the ops (claim 2);
- stage 1: one representative per group on every edge (claim 3); stage 2: on every edge, all
  ops of the group whose representative won there (claims 1, 4), via the supernet's `edge_ops`;
- one-level optimisation, architecture and weights from the same training batches (claims 6-7),
  bi-level kept as an ablation;
- two DVC stages, search_stage1@stacnas -> search@stacnas, each a DARTS search run (`run_search`).
Alphas are shared per cell type (normal / reduce), as DARTS and the authors' `--alpha_share` runs
do: "edge j of cell i" in claim 1 reads as edge j of cell type i. When the space lists `none`
it joins every edge of both stages, as in the authors' code (genotypes.py), and ranks edges.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from nascore.config import ParamsError, spec
from nascore.layout import read_json, write_json
from nascore.methods.base import METHODS, stage
from nascore.methods.darts import DartsMethod, DartsParams, SearchParams
from nascore.spaces.darts import CellSpace
from nascore.strategies.grouping import ZERO, cluster_ops, op_correlation, representatives, stage2_edge_ops
from nascore.supernets import SUPERNETS


@dataclass(frozen=True)
class ClusterParams:
    warmup_epochs: int = spec(ge=0, doc="weight-only epochs of the all-op supernet before measuring")
    batches: int = spec(ge=1, doc="training batches the op correlations are averaged over")
    threshold: float = spec(gt=0.0, le=2.0, doc="merge clusters while their mean (1 - corr) is below this")


@dataclass(frozen=True)
class Stage2Params:
    C: int = spec(ge=2)
    layers: int = spec(ge=3, doc="cells of the stage-2 supernet (paper: 20; stage 1: 14)")
    epochs: int = spec(ge=1)


@dataclass(frozen=True)
class StacnasSearchParams(SearchParams):
    train_portion: float = spec(gt=0.0, le=1.0, doc="share of the training set the search learns from; "
                                "one-level may use all of it (1.0), the rest only measures the supernet")
    groups: list[list[str]] = spec(doc="operator groups; the first op of each is its stage-1 representative")
    grouping: Literal["fixed", "cluster"] = spec(doc="fixed: `groups`; cluster: claim 2, from op correlations")
    cluster: ClusterParams = spec()
    optimisation: Literal["one_level", "bi_level"] = spec(doc="one_level: claims 6-7; bi_level: ablation")
    stage2: Stage2Params = spec()

    def validate(self, path: str) -> None:
        super().validate(path)
        ops = [op for op in self.supernet.primitives if op != ZERO]
        flat = [op for g in self.groups for op in g]
        if sorted(flat) != sorted(ops) or any(not g for g in self.groups):
            raise ParamsError(f"{path}.groups: got {self.groups}; the groups must split "
                              f"{ops} (supernet.primitives without {ZERO!r}) into non-empty parts, "
                              "each op in exactly one group")
        if self.optimisation == "one_level" and self.order != 1:
            raise ParamsError(f"{path}.order: got {self.order}; one-level optimisation has no unrolled step, "
                              "allowed: 1 (or optimisation: bi_level)")
        if self.optimisation == "bi_level" and self.train_portion >= 1.0:
            raise ParamsError(f"{path}.train_portion: got {self.train_portion}; bi-level needs held-out images "
                              "for the architecture step, allowed: < 1.0")


@dataclass(frozen=True)
class StacnasParams(DartsParams):
    search: StacnasSearchParams


@METHODS.register("stacnas")
class StacnasMethod(DartsMethod):
    name = "stacnas"
    params_cls = StacnasParams
    search_stages = ("stage1", "stage2")

    def one_level(self) -> bool:
        return self.p.search.optimisation == "one_level"

    def run_tags(self) -> dict[str, str]:
        return {"optimisation": self.p.search.optimisation, "grouping": self.p.search.grouping}

    def zero(self) -> bool:
        return ZERO in self.p.search.supernet.primitives

    def stage1_dir(self) -> Path:
        return self.layout.search_dir(self.name, "search_stage1")

    # -- stages ----------------------------------------------------------------------------
    def search(self, stage: str = "stage1") -> dict[str, Any]:
        self.check_stage(stage)
        return self._stage1() if stage == "stage1" else self._stage2()

    def _stage1(self) -> dict[str, Any]:
        s = self.p.search
        out = self.stage1_dir()
        found: dict[str, Any] = {}

        def build(num_classes: int, train) -> torch.nn.Module:
            groups = s.groups
            if s.grouping == "cluster":
                groups, corr = self._cluster(num_classes, train)
                found["correlation"] = corr.tolist()
            found["groups"] = [list(g) for g in groups]
            prims = ([ZERO] if self.zero() else []) + representatives(groups)
            return SUPERNETS["darts"].from_config(s.supernet, num_classes, CellSpace(primitives=tuple(prims)))

        def log() -> None:
            import mlflow
            mlflow.log_dict(found, "groups.json")
            mlflow.set_tag("groups", " | ".join(",".join(g) for g in found["groups"]))

        def groups(metrics: dict[str, Any]) -> dict[str, Any]:
            write_json(out / "groups.json", {"grouping": s.grouping, "primitives": list(s.supernet.primitives),
                                             **found})
            return metrics

        return self.run_search("search_stage1", build, out, f"{self.name}-search_stage1", epochs=s.epochs,
                               on_run_start=log, on_outputs=groups)

    @stage(lambda self: self.layout.search_dir(self.name) / "status.json",
           lambda self: self.layout.metrics(f"{self.name}-search"))
    def _stage2(self) -> dict[str, Any]:
        s = self.p.search
        self.require(self.stage1_dir() / "status.json", "not run: stage 1 produced no result")
        edge_ops, active, prior = self.stage2_plan()
        write_json(self.layout.search_dir(self.name) / "stage2_edges.json",
                   {"edge_ops": edge_ops, "active_group": active, "stage1_group_weight": prior})
        space = self.space()

        def build(num_classes: int, train) -> torch.nn.Module:
            return SUPERNETS["grouped"].from_config(s.supernet, num_classes, space, C=s.stage2.C, layers=s.stage2.layers,
                                                    edge_ops=edge_ops, group_prior=prior)

        def total(metrics: dict[str, Any]) -> dict[str, Any]:  # the search cost of the method is both stages
            m1 = read_json(self.layout.metrics(f"{self.name}-search_stage1"))
            return {**metrics, "search_seconds_total": round(m1["search_seconds"] + metrics["search_seconds"], 1)}

        stage1 = hashlib.sha256(json.dumps(edge_ops, sort_keys=True).encode()).hexdigest()[:8]
        return self.run_search("search_stage2", build, self.layout.search_dir(self.name), f"{self.name}-search",
                               epochs=s.stage2.epochs, fingerprint_extra=stage1, on_outputs=total)

    def stage2_plan(self) -> tuple[dict[str, list[list[str]]], dict[str, list[int]], dict[str, list[float]]]:
        """From stage 1's final softmax(alpha): each edge's candidates, activated group, and the
        stage-1 weight of that group (the edge prior when the space has no zero op)."""
        hist = read_json(self.stage1_dir() / "alpha_history.json")
        groups = read_json(self.stage1_dir() / "groups.json")["groups"]
        prims = hist["primitives"]
        probs = {k: torch.tensor(v) for k, v in hist["epochs"][-1]["alphas"].items()}
        edge_ops, active = stage2_edge_ops(probs, prims, groups, self.zero())
        prior = {k: [float(probs[k][e, prims.index(groups[g][0])]) for e, g in enumerate(active[k])]
                 for k in probs}
        return edge_ops, active, prior

    def _cluster(self, num_classes: int, train) -> tuple[list[list[str]], torch.Tensor]:
        """Claim 2: warm up a supernet holding every op (uniform alphas, weights only), then group
        the ops by the correlation of their outputs."""
        s, c = self.p.search, self.p.search.cluster
        prims = tuple(s.supernet.primitives)
        device = train.x.device
        model = SUPERNETS["darts"].from_config(s.supernet, num_classes, CellSpace(primitives=prims)).to(device)
        opt = torch.optim.SGD(model.weight_parameters(), s.lr, momentum=s.momentum, weight_decay=s.weight_decay)
        for epoch in range(c.warmup_epochs):
            for x, y in train.epoch(epoch):
                opt.zero_grad(set_to_none=True)
                F.cross_entropy(model(x), y).backward()
                nn.utils.clip_grad_norm_(model.weight_parameters(), s.grad_clip)
                opt.step()
            print(f"[stacnas] clustering warm-up epoch {epoch + 1}/{c.warmup_epochs}")
        batches = [b for _, b in zip(range(c.batches), train.epoch(c.warmup_epochs))]
        corr = op_correlation(model, batches, prims)
        groups = cluster_ops(prims, corr, c.threshold)
        print(f"[stacnas] groups by clustering: {groups}")
        return groups, corr

    # -- report ------------------------------------------------------------------------------
    def extra_report_sections(self) -> list[str]:
        from nascore.report.figures import plot_alphas, plot_correlation

        d = self.stage1_dir()
        if not (d / "groups.json").is_file() or not (self.layout.search_dir(self.name) / "stage2_edges.json").is_file():
            return ["## Two-stage search", "", "Stage 1 or stage 2 has not produced a result yet.", ""]
        groups = read_json(d / "groups.json")
        hist = read_json(d / "alpha_history.json")
        m1 = read_json(self.layout.metrics(f"{self.name}-search_stage1"))
        plan = read_json(self.layout.search_dir(self.name) / "stage2_edges.json")
        fig_dir = self.layout.figures() / self.name
        lines = ["## Two-stage search (seed 004)", "",
                 f"Operator groups ({groups['grouping']}): " + "; ".join("{" + ", ".join(g) + "}" for g in groups["groups"])
                 + f". Stage-1 representatives: {', '.join(representatives(groups['groups']))}"
                 + (f"; `{ZERO}` on every edge of both stages (authors' code)." if self.zero() else "."), "",
                 f"Ours, stage 1: {m1['optimisation']}, {m1['epochs']} epochs on {m1['images']['s_train']} images "
                 f"({m1['profile']} profile, {m1['hardware']}), {m1['search_seconds']} s"
                 + (f", supernet val error {m1['val_err']:.2f}% on {m1['images']['s_val']} held-out images"
                    if "val_err" in m1 else "") + ".", ""]
        if "correlation" in groups:
            plot_correlation(groups["correlation"], groups["primitives"], fig_dir / "op_correlation.png")
            lines += [f"![op output correlation](figures/{self.name}/op_correlation.png)", ""]
        edges = hist["edges"]
        lines += ["Group activated on each edge by stage 1 (its representative's stage-1 weight), whose ops "
                  "stage 2 searches over:", "", "| edge | " + " | ".join(plan["active_group"]) + " |",
                  "|---|" + "---|" * len(plan["active_group"])]
        for e, (node, src) in enumerate(edges):
            cells = [f"{{{', '.join(groups['groups'][plan['active_group'][k][e]])}}} "
                     f"({plan['stage1_group_weight'][k][e]:.3f})" for k in plan["active_group"]]
            lines.append(f"| {src}->{node} | " + " | ".join(cells) + " |")
        lines.append("")
        for group in hist["epochs"][-1]["alphas"]:
            plot_alphas(hist, group, fig_dir / f"stage1_alphas_{group}.png")
            lines += [f"![stage-1 alpha evolution, {group}](figures/{self.name}/stage1_alphas_{group}.png)", ""]
        return lines
