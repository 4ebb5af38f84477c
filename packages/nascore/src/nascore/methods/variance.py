"""Seed variance of a method (the `variance` stage): N searches x M trainings of each search's result,
at a budget profile of their own (params/run.yaml `run.variance`), reported as the mean +- std over the
N searches (each search's number averaged over its M trainings) and, apart, the best of N, the way the
field reports a search method (DARTS sec. 3.3: best of 4 searches; Li & Talwalkar 2019: mean over
searches). Each run is the method's own stages under its own root (runs/<method>/variance/), reading the
project's prepared data; a killed stage resumes from its ledger. What is measured is the method's
(`Method.variance_metric`): the test error of a cell or chain network, an open-set method's AUROC."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import statistics
import time
from pathlib import Path
from typing import Any, Protocol

from nascore.data.prepare import NotRun, read_manifest
from nascore.layout import Layout, read_json, write_json
from nascore.runtime import hardware
from nascore.tracking.schema import tagged


class Method(Protocol):
    """What the protocol uses of a method (nascore.methods.base.Method, which calls this module)."""
    name: str
    params: Any
    layout: Layout
    search_stages: tuple[str, ...]
    variance_metric: tuple[str, str]
    hash_key: str

    @classmethod
    def from_project(cls, root: Path, profile: str | None = None) -> "Method": ...
    def search(self, stage: str = "search") -> dict[str, Any]: ...
    def finetune(self, dataset: str) -> dict[str, Any]: ...
    def evaluate(self, dataset: str) -> dict[str, Any]: ...
    def search_cost_s(self) -> float | None: ...
    def variance_dataset(self) -> str: ...
    def variance_record(self, result: dict[str, Any]) -> dict[str, Any]: ...


def spread(values: list[float], digits: int = 3) -> dict[str, float | int]:
    """Mean, sample standard deviation (0 for one value) and n: how every mean +- std in nascore is
    computed."""
    return {"mean": round(statistics.fmean(values), digits),
            "std": round(statistics.stdev(values), digits) if len(values) > 1 else 0.0, "n": len(values)}


def _seeded(method: Method, budget: Method, seed: int, root: Path) -> Method:
    """`method`'s class with `budget`'s method params, run params at `seed`, its outputs under `root`."""
    params = dataclasses.replace(budget.params, run=dataclasses.replace(method.params.run, seed=seed),
                                 data=method.params.data)
    seeded = type(method)(params, root)
    seeded.layout = Layout(root, data_root=method.layout.root)
    return seeded


def seed_variance(method: Method) -> dict[str, Any]:
    """Run (or resume) the N x M protocol of `method` and write reports/metrics/<method>-variance.json."""
    v, run = method.params.run.variance, method.params.run
    if v.searches * v.trainings < 2:
        raise NotRun("not run: run.variance asks for one search and one training (set run.variance.searches "
                     "and trainings in params/run.yaml or a profile)")
    dataset = method.variance_dataset()  # a method may refuse run.variance.dataset: before any compute
    profile = v.budget or method.params.profile
    budget = method if profile == method.params.profile else type(method).from_project(method.layout.root, profile)
    manifest = read_manifest(method.layout.prepared(v.dataset))
    if manifest.get("status") != "ok":  # no data here: recorded as not run, the DAG goes on
        raise NotRun(manifest.get("reason", f"not run: no prepared {v.dataset}"))
    home = method.layout.root / "runs" / method.name / "variance"
    # what the runs use: the budget's method params (every section but the papers' numbers), this
    # profile's run and data params, the code; a change to any of them starts the ledger over
    used = _seeded(method, budget, run.seed, home).params
    sections = [f.name for f in dataclasses.fields(used.method) if f.name != "paper"]
    fingerprint = hashlib.sha256(json.dumps(
        [used.fingerprint(*sections), v.searches, v.trainings, dataset], sort_keys=True).encode()).hexdigest()[:16]
    ledger_path = home / "ledger.json"
    ledger = read_json(ledger_path) if ledger_path.is_file() else {}
    if ledger.get("fingerprint") != fingerprint:  # other params or code: start over
        ledger = {"fingerprint": fingerprint, "searches": {}, "runs": {}, "seconds": 0.0}
    started, before = time.perf_counter(), ledger.get("seconds", 0.0)

    def save() -> None:  # the wall clock of every segment so far travels with the ledger, as checkpoints do
        ledger["seconds"] = before + time.perf_counter() - started
        write_json(ledger_path, ledger)

    for i in range(v.searches):
        root = home / f"search{i}"
        for j in range(v.trainings):
            if f"{i}/{j}" in ledger["runs"]:
                continue
            if str(i) not in ledger["searches"]:
                searcher = _seeded(method, budget, run.seed + i, root)
                with tagged(variance=f"search{i}"):
                    for stage in searcher.search_stages:
                        searcher.search(stage)
                ledger["searches"][str(i)] = {"search_seconds": searcher.search_cost_s()}
                save()
            trainer = _seeded(method, budget, run.seed + j, root)
            with tagged(variance=f"search{i}-training{j}"):
                trainer.finetune(dataset)
                result = trainer.evaluate(dataset)
            if result.get("status") != "ok":
                raise RuntimeError(f"{method.name} variance run search {i}, training {j}: {result}")
            ledger["runs"][f"{i}/{j}"] = trainer.variance_record(result)
            save()
    save()
    return _write(method, ledger, profile, dataset)


def _write(method: Method, ledger: dict[str, Any], profile: str, dataset: str) -> dict[str, Any]:
    v, run = method.params.run.variance, method.params.run
    key, better = method.variance_metric
    hash_key, digits = method.hash_key, 4 if better == "higher" else 3  # AUROCs are fractions, errors %
    per_search = [statistics.fmean(ledger["runs"][f"{i}/{j}"][key] for j in range(v.trainings))
                  for i in range(v.searches)]
    best = (min if better == "lower" else max)(range(v.searches), key=lambda i: per_search[i])
    runs = [{"search": i, "training": j, "search_seed": run.seed + i, "train_seed": run.seed + j,
             **ledger["runs"][f"{i}/{j}"]} for i in range(v.searches) for j in range(v.trainings)]
    best_hash = ledger["runs"][f"{best}/0"][hash_key]
    metrics = {"status": "ok", "dataset": dataset, "profile": method.params.profile, "budget_profile": profile,
               "searches": v.searches, "trainings": v.trainings, "metric": key, "better": better,
               # top level, for dvc metrics and CI's gate: the mean over searches, the best of N's architecture
               key: round(statistics.fmean(per_search), digits),
               hash_key: best_hash,
               f"{key}_over_searches": spread(per_search, digits),
               f"{key}_over_runs": spread([r[key] for r in runs], digits),
               "best_of_n": {"search": best, key: round(per_search[best], digits),
                             hash_key: best_hash},
               "distinct_architectures": len({r[hash_key] for r in runs}),
               "search_seconds": [ledger["searches"][str(i)].get("search_seconds") for i in range(v.searches)],
               "runs": runs, "seconds": round(ledger["seconds"], 1), "hardware": hardware()}
    write_json(method.layout.metrics(f"{method.name}-variance"), metrics)
    return metrics
