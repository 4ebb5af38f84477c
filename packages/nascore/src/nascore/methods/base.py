"""The stages every method runs (search -> finetune -> evaluate), built from pieces a method
provides. A method overrides only what its paper changes."""
from __future__ import annotations

import contextlib
import functools
import os
import time
from pathlib import Path
from typing import Any, Callable

from nascore.config import ParamsError
from nascore.data.prepare import NotRun
from nascore.genotype import Genotype
from nascore.layout import Layout, read_json, write_json
from nascore.lock import hold, sweep_temp
from nascore.params import Params, load_params
from nascore.registry import Registry
from nascore.runtime import setup
from nascore.tracking import configure
from nascore.tracking.mlflow import lost_server

METHODS: Registry = Registry("method")


def stage(*records: Callable[..., Path]) -> Callable:
    """Wrap a stage body with what every stage does around it: a lock on its outputs (a second run of
    the same stage fails at once), the tracking store configured first, a `NotRun` the body raises (no
    data, no upstream result) recorded as "not run" in each of `records(self, *args)` (status and
    metrics files) and returned so the DAG completes, and a team server that dies mid-stage turned
    into one clear error. The body is the paper's logic; it gets data with `self.data`, upstream
    results with `self.require` and the device with `self.device()`."""
    def wrap(body: Callable[..., dict[str, Any]]) -> Callable[..., dict[str, Any]]:
        @functools.wraps(body)
        def run(self: "Method", *args: Any, **kwargs: Any) -> dict[str, Any]:
            configure(self.params.run.tracking_uri)  # an unreachable store fails before anything is written
            outputs = [record(self, *args, **kwargs) for record in records]
            with self.stage_lock(outputs[0] if outputs else Path(body.__name__)):
                for folder in {*(p.parent for p in outputs), self.layout.checkpoints(self.name)}:
                    sweep_temp(folder)  # what writers killed mid-write left
                try:
                    return body(self, *args, **kwargs)
                except NotRun as e:
                    for path in outputs:
                        path.parent.mkdir(parents=True, exist_ok=True)
                    return self.not_run(str(e), *outputs)
                except Exception as e:
                    lost = lost_server(e, f"{self.name} {body.__name__}")
                    if lost is None:
                        raise
                    raise lost from e
        return run
    return wrap


class Method:
    """Base class: subclasses set `name`, `params_cls` and implement the stage bodies."""

    name = "base"
    params_cls: type = object
    search_dataset = "cifar10"

    def __init__(self, params: Params, root: Path) -> None:
        self.params, self.layout = params, Layout(root)
        self.p = params.method

    @classmethod
    def from_project(cls, root: Path, profile: str | None = None) -> "Method":
        """The method with its params read from root/params/ (the active or the given profile)."""
        return cls(load_params(root, cls.name, profile, params_cls=cls.params_cls, methods=METHODS.names()), root)

    search_stages: tuple[str, ...] = ("search",)  # DVC stages of the search; later ones read earlier ones

    # stages, each writing its outputs and metrics; implemented by subclasses
    def search(self, stage: str = "search") -> dict[str, Any]:
        raise NotImplementedError

    def check_stage(self, stage: str) -> None:
        if stage not in self.search_stages:
            raise ParamsError(f"{self.name} has no search stage {stage!r}; allowed: {', '.join(self.search_stages)}")

    def finetune(self, dataset: str) -> dict[str, Any]:
        raise NotImplementedError

    def evaluate(self, dataset: str) -> dict[str, Any]:
        raise NotImplementedError

    @stage(lambda self: self.layout.metrics(f"{self.name}-variance"))
    def variance(self) -> dict[str, Any]:
        """Seed variance: N searches x M trainings at run.variance's budget (nascore.methods.variance)."""
        from nascore.methods.variance import seed_variance

        return seed_variance(self)

    def report(self) -> Path:
        """Write reports/<method>.md and its figures, holding the report's lock; what a killed report left
        (figures under temp names) is swept first."""
        with self.stage_lock(self.layout.report(self.name)):
            sweep_temp(self.layout.figures() / self.name)
            return self.write_report()

    def write_report(self) -> Path:
        """The report itself (the DARTS-family report unless a method has its own)."""
        from nascore.report import write_report

        return write_report(self)

    def extra_report_sections(self) -> list[str]:
        """Markdown lines a method adds to its report (e.g. a hyper-parameter study)."""
        return []

    # what stage bodies use
    def data(self, dataset: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """The prepared tensors and manifest of `dataset` (NotRun when it has no data here)."""
        from nascore.data.prepare import load_prepared

        return load_prepared(self.layout.prepared(dataset))

    def require(self, status_path: Path, missing: str = "not run: no upstream result") -> dict[str, Any]:
        """An upstream stage's status, which must be ok (else NotRun with its reason)."""
        status = self.status_of(status_path)
        if status.get("status") != "ok":
            raise NotRun(status.get("reason", missing))
        return status

    # the seed-variance protocol (nascore.methods.variance): what it trains on and measures
    variance_metric: tuple[str, str] = ("top1_err", "lower")  # a key of evaluate's metrics; which way is better
    hash_key = "genotype_hash"  # the key of evaluate's metrics naming the architecture trained

    def variance_dataset(self) -> str:
        """The dataset (for evaluate) the protocol's trainings run on: run.variance.dataset."""
        return self.params.run.variance.dataset

    def variance_record(self, result: dict[str, Any]) -> dict[str, Any]:
        """What the variance ledger keeps of one training's evaluate metrics."""
        keys = (self.variance_metric[0], "top5_err", "params_m", self.hash_key)
        return {k: result.get(k) for k in keys}

    def search_cost_s(self) -> float | None:
        """Wall-clock seconds of this method's whole search, from its search metrics (every search stage,
        and a generation stage where the method has one)."""
        from nascore.report.summary import search_cost_s

        names = (f"{self.name}-search", f"{self.name}-generation")
        return search_cost_s({n: read_json(self.layout.metrics(n)) for n in names
                              if self.layout.metrics(n).is_file()}, self.name)

    def stage_lock(self, output: Path) -> contextlib.AbstractContextManager:
        """The lock of the stage writing `output` (runs/<method>/locks/); under data parallelism only
        rank 0 takes it, the other processes of the same run being its partners, not rivals."""
        if int(os.environ.get("RANK", "0")) != 0:
            return contextlib.nullcontext()
        try:
            rel = output.resolve().relative_to(self.layout.root.resolve())
        except ValueError:
            rel = Path(output.name)
        return hold(self.layout.root / "runs" / self.name / "locks" / f"{'_'.join(rel.parts)}.lock",
                    f"the {self.name} stage writing {rel}")

    def device(self):
        """The run's device, after seeding and setting threads and determinism from the run params:
        a body calls it once, before it draws anything random."""
        return setup(self.params.run)

    # shared helpers
    def not_run(self, reason: str, *paths: Path) -> dict[str, Any]:
        """Record a stage that could not run (no data) so the DAG still completes."""
        record = {"status": "not run", "reason": reason}
        for p in paths:
            write_json(p, record)
        print(f"[nascore] {reason}")
        return record

    def status_of(self, path: Path) -> dict[str, Any]:
        return read_json(path) if path.is_file() else {"status": "missing", "reason": f"{path} missing"}


class Timer:
    def __enter__(self):
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.t0


def genotype_tags(genotype: Genotype, **extra: str) -> dict[str, str]:
    return {"genotype_hash": genotype.canonical_hash(), **{k: str(v) for k, v in extra.items()}}

