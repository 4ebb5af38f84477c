"""reports/summary.md: every method side by side, per dataset: ours (from the DVC metrics each
method's stages wrote, with profile, hardware and budget) beside the papers' rows (from each
method's `paper:` params, with their tables), and a figure of error against search cost."""
from __future__ import annotations

import re
import statistics
from pathlib import Path
from typing import Any

from nascore.config import read_yaml
from nascore.data.sources import DATASETS
from nascore.lock import sweep_temp
from nascore.report.figures import plot_error_vs_search_cost
from nascore.regression import collect
from nascore.report.markdown import write_markdown

OPENSET = ("cifar10_osr", "cifar_plus10")
TABLE_REF = re.compile(r",\s*(Tab\.|Table|README).*$")  # a row label's table reference, cut for a legend
COLUMNS = ("| method | row | top-1 err (%) | top-5 err (%) | params (M) | MACs (M) | search cost | budget |",
           "|---|---|---|---|---|---|---|---|")


def _fmt(v: Any, nd: int = 2) -> str:
    if v is None:
        return "-"
    return f"{v:.{nd}f}".rstrip("0").rstrip(".") if isinstance(v, float) else str(v)


def search_cost_s(metrics: dict[str, dict[str, Any]], method: str) -> float | None:
    """Wall-clock seconds of a method's whole search: every search stage (stacnas' two), and
    vgg_rl's generation step (its survivors trained longer to rank them)."""
    s = metrics.get(f"{method}-search", {})
    if s.get("status") != "ok":
        return None
    total = s.get("search_seconds_total", s.get("search_seconds"))
    gen = metrics.get(f"{method}-generation", {})
    return None if total is None else round(total + gen.get("generation_seconds", 0.0), 1)


def _ours(method: str, r: dict[str, Any], cost: float | None, seed: int) -> str:
    if r.get("status") != "ok":
        return f"| {method} | ours | {r.get('reason', r.get('status', 'no metrics'))} | | | | | |"
    where = f"{r['profile']} profile, seed {seed}, n = 1"
    budget = f"{r['epochs']} epochs, {r['train_images']} train / {r['test_images']} test images; {r['hardware']}"
    arch = r.get("genotype_hash") or r.get("arch_hash")
    return (f"| {method} | **ours** ({where}; arch `{arch}`) | {_fmt(r['top1_err'])} | {_fmt(r.get('top5_err'))} | "
            f"{_fmt(r['params_m'], 3)} | {_fmt(r.get('macs_m'))} | "
            f"{'-' if cost is None else f'{cost:g} s'} | {budget} |")


def _variance_cells(v: dict[str, Any]) -> dict[str, str]:
    """A seed-variance file in words: who (profile, budget, N x M, best of N), the mean +- std over
    searches of its metric, the mean params, the search cost, and the budget."""
    key = v.get("metric", "top1_err")
    over, best = v[f"{key}_over_searches"], v["best_of_n"]
    costs = [c for c in v["search_seconds"] if c is not None]
    nd = 3 if v.get("better") == "higher" else 2
    return {"who": (f"**ours, seed variance** ({v['profile']} profile at the {v['budget_profile']} budget, "
                    f"{v['searches']} searches x {v['trainings']} trainings; n = {over['n']} searches, "
                    f"{v['distinct_architectures']} distinct architecture{'s' if v['distinct_architectures'] > 1 else ''}; "
                    f"best of {v['searches']}: {_fmt(best[key], nd)}, arch `{best.get('genotype_hash') or best.get('arch_hash')}`)"),
            "value": f"{_fmt(over['mean'], nd)} ± {_fmt(over['std'], nd)}",
            "params": _fmt(statistics.fmean(r["params_m"] for r in v["runs"]), 3),
            "cost": f"{statistics.fmean(costs):.3g} s per search" if costs else "-",
            "budget": f"{v['budget_profile']} params, {len(v['runs'])} trainings; {v['hardware']}"}


def _variance(method: str, v: dict[str, Any]) -> str:
    """The seed-variance row of the error tables: mean +- std over N searches, best of N."""
    c = _variance_cells(v)
    return f"| {method} | {c['who']} | {c['value']} | - | {c['params']} | - | {c['cost']} | {c['budget']} |"


def _paper(method: str, row: dict[str, Any]) -> str:
    err = row.get("test_err", row.get("top1_err"))
    std = row.get("test_err_std")
    days = row.get("search_gpu_days")
    who = (f"cited in {method}'s paper" if row.get("cited")
           else "paper, not reproduced here" if row.get("not_reproduced") else "paper")
    return (f"| {method} | {who}: {row['label']} | {_fmt(err)}{'' if std is None else f' ± {_fmt(std)}'} | "
            f"{_fmt(row.get('top5_err'))} | {_fmt(row.get('params_m'))} | {_fmt(row.get('macs_m'))} | "
            f"{'-' if days is None else f'{days:g} GPU-days'} | as published |")


def write_summary(root: Path, methods: list[str], seed: int) -> Path:
    sweep_temp(root / "reports" / "figures" / "summary")  # what a killed summary left
    metrics = collect(root / "reports" / "metrics")
    papers = {m: read_yaml(root / "params" / f"{m}.yaml").get("paper", {}) for m in methods}
    cited = root / "params" / "not_reproduced.yaml"  # methods we compare with but do not run
    others = read_yaml(cited) if cited.is_file() else {}
    for m, entry in (others.get("methods") or {}).items():
        papers[m] = {ds: [{**row, "not_reproduced": True} for row in rows] for ds, rows in entry.items()}
    listed = [*methods, *(m for m in papers if m not in methods)]
    lines = ["# Summary: every method side by side", "",
             "_Generated by the `summary` stage. **ours**: from `reports/metrics/*.json` (each row names its "
             "profile, seed, hardware and budget; n = number of seeds); **ours, seed variance**: the test error's "
             "(open-set: the center-distance AUROC's) mean ± std over N searches (each search's number the mean of its "
             "M trainings) at the budget named, and the best of N apart (the `variance` stages); **paper**: the published numbers in "
             "`params/<method>.yaml` (`paper:`), each with the table it comes from; *cited* rows are other methods' "
             "numbers as that paper quotes them. Our search cost is wall-clock "
             "seconds on our hardware; the papers' is GPU-days: the two are never on one scale._", ""]
    costs = {m: search_cost_s(metrics, m) for m in methods}
    points: dict[str, list] = {"ours": [], "paper": []}
    for ds in DATASETS.names():
        ours = [(m, metrics[f"{m}-{ds}"]) for m in methods if f"{m}-{ds}" in metrics]
        rows = [(m, row) for m in listed for row in papers[m].get(ds, [])]  # the paper's own results first
        theirs = [r for r in rows if not r[1].get("cited")] + [r for r in rows if r[1].get("cited")]
        if not ours and not theirs:
            continue
        name = next((r["dataset"] for _, r in ours if r.get("status") == "ok"), DATASETS[ds].display_name)
        lines += [f"## {name}", "", *COLUMNS]
        for m, r in ours:
            lines.append(_ours(m, r, costs[m], seed))
            v = metrics.get(f"{m}-variance", {})
            if v.get("status") == "ok" and v["dataset"] == ds:
                lines.append(_variance(m, v))
            if ds == "cifar10" and r.get("status") == "ok" and costs[m] is not None:
                points["ours"].append((m, costs[m], r["top1_err"]))
        for m, row in theirs:
            lines.append(_paper(m, row))
            err, days = row.get("test_err", row.get("top1_err")), row.get("search_gpu_days")
            if ds == "cifar10" and err is not None and days and not row.get("cited"):
                points["paper"].append((f"{m}: {TABLE_REF.sub('', row['label'])}", days, err))
        if not theirs:
            lines += ["", "_No paper reports this dataset; our rows compare the methods with each other only._"]
        lines.append("")
    lines += ["## Sources of the papers' rows", "",
              *(f"- {m}: {papers[m]['source']}" for m in methods if papers[m].get("source")),
              *([f"- {', '.join(others['methods'])} (not reproduced here): {others['source']}"] if others else []), ""]
    lines += _openset(metrics, methods)
    if points["ours"] or points["paper"]:
        fig = plot_error_vs_search_cost(points["ours"], points["paper"],
                                        root / "reports" / "figures" / "summary" / "error_vs_search_cost.png")
        lines += ["## CIFAR-10 error against search cost", "",
                  f"![error against search cost](figures/summary/{fig.name})", "",
                  "_Left: ours (seconds on our hardware, the profile's budget); right: the papers' (GPU-days, log "
                  "scale). The two panels are not on one scale._", ""]
    return write_markdown(root / "reports" / "summary.md", lines)


def _openset(metrics: dict[str, dict[str, Any]], methods: list[str]) -> list[str]:
    """Open-set recognition is another task (known classes vs unknown ones): its own table."""
    rows = [(m, p, metrics[f"{m}-{p}"]) for m in methods for p in OPENSET if f"{m}-{p}" in metrics]
    if not rows:
        return []
    out = ["## Open-set recognition", "",
           "| method | protocol | closed-set acc | AUROC (MSP) | AUROC (center distance) | OSCR (MSP) | budget |",
           "|---|---|---|---|---|---|---|"]
    for m, p, r in rows:
        if r.get("status") != "ok":
            out.append(f"| {m} | {p} | {r.get('reason', r.get('status'))} | | | | |")
            continue
        out.append(f"| {m} | {p} ({r['headline_variant']}, {r['known_dataset']}) | {_fmt(r['closed_acc'], 3)} | "
                   f"{_fmt(r['auroc_msp'], 3)} | {_fmt(r['auroc_center_distance'], 3)} | {_fmt(r['oscr_msp'], 3)} | "
                   f"{r['profile']} profile, {r['epochs']} epochs; {r['hardware']} |")
        v = metrics.get(f"{m}-variance", {})
        if v.get("status") == "ok" and v["dataset"] == p and v.get("metric") == "auroc_center_distance":
            c = _variance_cells(v)
            out.append(f"| {m} | {p}, {c['who']} | - | - | {c['value']} | - | {c['budget']} |")
    return [*out, "", "_No paper number: the patent (seed 000) reports none; reports/openset_rl.md compares the "
                      "method with its ablations._", ""]
