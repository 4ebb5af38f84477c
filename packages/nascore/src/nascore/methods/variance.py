"""Seed variance of a cell method (the `variance` stage): N searches x M trainings of each search's
genotype, at a budget profile of their own (params/run.yaml `run.variance`), reported as the mean +- std
over the N searches (each search's error averaged over its M trainings) and, apart, the best of N, the
way the field reports a search method (DARTS sec. 3.3: best of 4 searches; Li & Talwalkar 2019: mean
over searches). Each run is the method's own stages under its own root (runs/<method>/variance/), reading
the project's prepared data; a killed stage resumes from its ledger."""
from __future__ import annotations

import hashlib
import json
import statistics
import time
from dataclasses import replace
from typing import Any

from nascore.data.prepare import NotRun, read_manifest
from nascore.layout import Layout, read_json, write_json
from nascore.methods.base import Method
from nascore.runtime import hardware


def _seeded(method: Method, budget: Method, seed: int, root, label: str) -> Method:
    """`method`'s class with `budget`'s method params, run params at `seed`, its outputs under `root`,
    and every MLflow run tagged `variance=<label>` (so these runs never pass for the headline ones)."""
    cls = type(method)
    tagged = type(cls.__name__, (cls,), {"run_tags": lambda self: {**cls.run_tags(self), "variance": label}})
    params = replace(budget.params, run=replace(method.params.run, seed=seed), data=method.params.data)
    seeded = tagged(params, root)
    seeded.layout = Layout(root, data_root=method.layout.root)
    return seeded


def _spread(values: list[float]) -> dict[str, float | int]:
    return {"mean": round(statistics.fmean(values), 3),
            "std": round(statistics.stdev(values), 3) if len(values) > 1 else 0.0, "n": len(values)}


def seed_variance(method: Method) -> dict[str, Any]:
    """Run (or resume) the N x M protocol of `method` and write reports/metrics/<method>-variance.json."""
    v, run = method.params.run.variance, method.params.run
    if v.searches * v.trainings < 2:
        raise NotRun("not run: run.variance asks for one search and one training (set run.variance.searches "
                     "and trainings in params/run.yaml or a profile)")
    profile = v.budget or method.params.profile
    budget = method if profile == method.params.profile else type(method).from_project(method.layout.root, profile)
    manifest = read_manifest(method.layout.prepared(v.dataset))
    if manifest.get("status") != "ok":  # no data here: recorded as not run, the DAG goes on
        raise NotRun(manifest.get("reason", f"not run: no prepared {v.dataset}"))
    home = method.layout.root / "runs" / method.name / "variance"
    fingerprint = hashlib.sha256(json.dumps(
        [budget.params.fingerprint("search", "finetune", "evaluate"), run.seed, v.searches, v.trainings, v.dataset],
        sort_keys=True).encode()).hexdigest()[:16]
    ledger_path = home / "ledger.json"
    ledger = read_json(ledger_path) if ledger_path.is_file() else {}
    if ledger.get("fingerprint") != fingerprint:  # other params or code: start over
        ledger = {"fingerprint": fingerprint, "searches": {}, "runs": {}}
    started = time.perf_counter()
    for i in range(v.searches):
        root = home / f"search{i}"
        for j in range(v.trainings):
            if f"{i}/{j}" in ledger["runs"]:
                continue
            if str(i) not in ledger["searches"]:
                searcher = _seeded(method, budget, run.seed + i, root, f"search{i}")
                for stage in searcher.search_stages:
                    searcher.search(stage)
                ledger["searches"][str(i)] = {"search_seconds": searcher.search_cost_s()}
                write_json(ledger_path, ledger)
            trainer = _seeded(method, budget, run.seed + j, root, f"search{i}-training{j}")
            trainer.finetune(v.dataset)
            result = trainer.evaluate(v.dataset)
            if result.get("status") != "ok":
                raise RuntimeError(f"{method.name} variance run search {i}, training {j}: {result}")
            ledger["runs"][f"{i}/{j}"] = {k: result.get(k) for k in ("top1_err", "top5_err", "params_m", "genotype_hash")}
            write_json(ledger_path, ledger)
    return _write(method, ledger, profile, time.perf_counter() - started)


def _write(method: Method, ledger: dict[str, Any], profile: str, seconds: float) -> dict[str, Any]:
    v, run = method.params.run.variance, method.params.run
    per_search = [statistics.fmean(ledger["runs"][f"{i}/{j}"]["top1_err"] for j in range(v.trainings))
                  for i in range(v.searches)]
    best = min(range(v.searches), key=lambda i: per_search[i])
    runs = [{"search": i, "training": j, "search_seed": run.seed + i, "train_seed": run.seed + j,
             **ledger["runs"][f"{i}/{j}"]} for i in range(v.searches) for j in range(v.trainings)]
    metrics = {"status": "ok", "dataset": v.dataset, "profile": method.params.profile, "budget_profile": profile,
               "searches": v.searches, "trainings": v.trainings,
               # top level, for dvc metrics and CI's gate: the mean over searches, the best of N's genotype
               "top1_err": round(statistics.fmean(per_search), 3),
               "genotype_hash": ledger["runs"][f"{best}/0"]["genotype_hash"],
               "top1_err_over_searches": _spread(per_search),
               "top1_err_over_runs": _spread([r["top1_err"] for r in runs]),
               "best_of_n": {"search": best, "top1_err": round(per_search[best], 3),
                             "genotype_hash": ledger["runs"][f"{best}/0"]["genotype_hash"]},
               "distinct_genotypes": len({r["genotype_hash"] for r in runs}),
               "search_seconds": [ledger["searches"][str(i)].get("search_seconds") for i in range(v.searches)],
               "runs": runs, "seconds": round(seconds, 1), "hardware": hardware()}
    write_json(method.layout.metrics(f"{method.name}-variance"), metrics)
    return metrics
